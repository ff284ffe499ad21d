"""What CloudFront would send: the page's response headers, and the headers it adds to what
it forwards to the API, computed from template.yaml.

The template's response-headers policy is the one source of the page's security headers, and
the distribution's `api` origin the one source of the header that proves a request came
through it (api/door.py). A small evaluator of the intrinsic functions they use (Ref,
Fn::Sub, Fn::Join, Fn::Select, Fn::Split, Fn::If and the conditions) turns them into header
values for a given set of parameters: the deployed ones in the tests, the local stack's URLs
and secrets in the dev web server. Secrets Manager's dynamic references
(`{{resolve:secretsmanager:...}}`) are resolved as CloudFormation resolves them when it
deploys the distribution, by a resolver the caller gives (the local stack's moto).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.template import load_template

NO_VALUE = object()
_SUB = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(ValueError):
    """The template uses something this evaluator cannot resolve."""


@dataclass
class Deployment:
    """One way of deploying the template: parameters, and what its resources resolve to."""

    parameters: Mapping[str, str] = field(default_factory=dict)
    # `Ref` of a resource, and `Fn::GetAtt` as "Resource.Attribute".
    resources: Mapping[str, str] = field(default_factory=dict)
    region: str = "us-east-1"
    stack_name: str = "rtv"

    def pseudo(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::Partition": "aws",
            "AWS::AccountId": "123456789012",
            "AWS::StackName": self.stack_name,
        }


class Evaluator:
    def __init__(self, template: Mapping[str, Any], deployment: Deployment) -> None:
        declared = template.get("Parameters") or {}
        unknown = set(deployment.parameters) - set(declared)
        if unknown:
            raise TemplateError(f"not parameters of the template: {sorted(unknown)}")
        self.values: dict[str, str] = {
            name: str(spec.get("Default", "")) for name, spec in declared.items()
        }
        self.values |= {k: str(v) for k, v in deployment.parameters.items()}
        self.values |= deployment.pseudo()
        self.resources = dict(deployment.resources)
        self._conditions = template.get("Conditions") or {}
        self._decided: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self._decided:
            self._decided[name] = bool(self.evaluate(self._conditions[name]))
        return self._decided[name]

    def evaluate(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.evaluate(n) for n in node) if v is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((name, arg),) = node.items()
            function = _FUNCTIONS.get(name)
            if function is not None:
                return function(self, arg)
            if name == "Condition":
                return self.condition(arg)
        return {
            k: v for k, v in ((k, self.evaluate(v)) for k, v in node.items()) if v is not NO_VALUE
        }

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        if name in self.resources:
            return self.resources[name]
        raise TemplateError(f"no value for Ref {name}: give it in Deployment.resources")

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.evaluate(v) for k, v in variables.items()}

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            if "." in name and name not in self.values:
                return str(self.getatt(name.split(".", 1)))
            return str(self.ref(name))

        return _SUB.sub(value, text)

    def getatt(self, arg: Any) -> Any:
        key = ".".join(arg) if isinstance(arg, list) else str(arg)
        if key not in self.resources:
            raise TemplateError(f"no value for GetAtt {key}: give it in Deployment.resources")
        return self.resources[key]


def _if(ev: Evaluator, arg: list[Any]) -> Any:
    name, yes, no = arg
    return ev.evaluate(yes if ev.condition(name) else no)  # only the chosen branch, as CFN


_FUNCTIONS: dict[str, Any] = {
    "Ref": lambda ev, arg: ev.ref(arg),
    "Fn::Sub": lambda ev, arg: ev.sub(arg),
    "Fn::GetAtt": lambda ev, arg: ev.getatt(arg),
    "Fn::Join": lambda ev, arg: arg[0].join(str(v) for v in ev.evaluate(arg[1])),
    "Fn::Select": lambda ev, arg: ev.evaluate(arg[1])[int(ev.evaluate(arg[0]))],
    "Fn::Split": lambda ev, arg: str(ev.evaluate(arg[1])).split(arg[0]),
    "Fn::If": _if,
    "Fn::Equals": lambda ev, arg: str(ev.evaluate(arg[0])) == str(ev.evaluate(arg[1])),
    "Fn::Not": lambda ev, arg: not ev.evaluate(arg[0]),
    "Fn::And": lambda ev, arg: all(ev.evaluate(a) for a in arg),
    "Fn::Or": lambda ev, arg: any(ev.evaluate(a) for a in arg),
}


def response_headers(
    deployment: Deployment,
    template: Mapping[str, Any] | None = None,
    policy: str = "WebHeadersPolicy",
) -> dict[str, str]:
    """The headers the named AWS::CloudFront::ResponseHeadersPolicy adds, as CloudFront
    writes them (documented names and value formats of each SecurityHeadersConfig item)."""
    template = load_template() if template is None else template
    config = Evaluator(template, deployment).evaluate(
        template["Resources"][policy]["Properties"]["ResponseHeadersPolicyConfig"]
    )
    security = config.get("SecurityHeadersConfig") or {}
    headers: dict[str, str] = {}
    if "ContentSecurityPolicy" in security:
        headers["Content-Security-Policy"] = security["ContentSecurityPolicy"][
            "ContentSecurityPolicy"
        ]
    if "StrictTransportSecurity" in security:
        hsts = security["StrictTransportSecurity"]
        value = f"max-age={int(hsts['AccessControlMaxAgeSec'])}"
        if hsts.get("IncludeSubdomains"):
            value += "; includeSubDomains"
        if hsts.get("Preload"):
            value += "; preload"
        headers["Strict-Transport-Security"] = value
    if "ContentTypeOptions" in security:
        headers["X-Content-Type-Options"] = "nosniff"
    if "FrameOptions" in security:
        headers["X-Frame-Options"] = security["FrameOptions"]["FrameOption"]
    if "ReferrerPolicy" in security:
        headers["Referrer-Policy"] = security["ReferrerPolicy"]["ReferrerPolicy"]
    if "XSSProtection" in security:
        xss = security["XSSProtection"]
        value = "1" if xss.get("Protection") else "0"
        if xss.get("Protection") and xss.get("ModeBlock"):
            value += "; mode=block"
        elif xss.get("Protection") and xss.get("ReportUri"):
            value += f"; report={xss['ReportUri']}"
        headers["X-XSS-Protection"] = value
    for item in (config.get("CustomHeadersConfig") or {}).get("Items", []):
        headers[item["Header"]] = item["Value"]
    return headers


@dataclass(frozen=True)
class SecretReference:
    """`{{resolve:secretsmanager:secret-id:SecretString:json-key:version-stage:version-id}}`:
    the parts after the secret's id are optional (empty: the whole string, AWSCURRENT)."""

    secret_id: str
    json_key: str = ""
    version_stage: str = ""
    version_id: str = ""


_DYNAMIC = re.compile(r"\{\{resolve:secretsmanager:(.+?)\}\}")


def secret_reference(text: str) -> SecretReference | None:
    """The Secrets Manager reference `text` is, or None when it is none. The id may be an ARN
    (colons and all): the parts are found after its `:SecretString` marker."""
    match = _DYNAMIC.fullmatch(text)
    if match is None:
        return None
    secret_id, marker, rest = match.group(1).partition(":SecretString")
    if not marker:  # {{resolve:secretsmanager:id}}: the whole string, AWSCURRENT
        return SecretReference(secret_id)
    parts = [*rest.removeprefix(":").split(":"), "", "", ""][:3]
    return SecretReference(secret_id, *parts)


def origin_headers(
    deployment: Deployment,
    resolve: Callable[[SecretReference], str],
    template: Mapping[str, Any] | None = None,
    origin: str = "api",
    distribution: str = "WebDistribution",
) -> dict[str, str]:
    """The custom headers the distribution adds to every request it forwards to `origin`
    (CloudFront replaces a viewer's header of the same name), dynamic references resolved."""
    template = load_template() if template is None else template
    config = template["Resources"][distribution]["Properties"]["DistributionConfig"]
    (wanted,) = [o for o in config["Origins"] if o["Id"] == origin]
    headers = Evaluator(template, deployment).evaluate(wanted.get("OriginCustomHeaders", []))
    if headers is NO_VALUE:
        return {}
    resolved: dict[str, str] = {}
    for header in headers:
        value = str(header["HeaderValue"])
        reference = secret_reference(value)
        resolved[str(header["HeaderName"])] = value if reference is None else resolve(reference)
    return resolved


def local_deployment(issuer_url: str, openai_base_url: str) -> Deployment:
    """The template as the local stack stands in for it: its issuer (an external one, so no
    Cognito) and its Realtime API. The page's origin is the dev web server ('self')."""
    return Deployment(parameters={"AuthIssuer": issuer_url, "OpenAIBaseUrl": openai_base_url})
