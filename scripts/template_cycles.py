"""Fails when the transformed template has a dependency cycle, naming it.

CloudFormation refuses such a stack only at deploy time, and cfn-lint cannot see through
SAM's transform: a function event puts the function inside the HttpApi's definition, so a
distribution naming the API and a Cognito client naming the distribution close a loop that
only the transformed template shows. Run with SAM's own translator (scripts/template_checks.sh
runs it in the pinned aws-sam-cli environment).
"""

from __future__ import annotations

import re
import sys
from typing import Any

from transform_template import transformed  # beside this script: SAM's transform, as JSON

_SUB = re.compile(r"\$\{([^!}][^}]*)\}")


def references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else value.split(".")[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found.update(name.split(".")[0] for name in _SUB.findall(text))
                if not isinstance(value, str):
                    references(value[1], found)
            else:
                references(value, found)
    elif isinstance(node, list):
        for item in node:
            references(item, found)


def main(path: str) -> int:
    resources = transformed(path)["Resources"]
    graph: dict[str, set[str]] = {}
    for name, resource in resources.items():
        found: set[str] = set()
        references(resource.get("Properties", {}), found)
        depends = resource.get("DependsOn", [])
        found.update([depends] if isinstance(depends, str) else depends)
        graph[name] = found & set(resources)
    state: dict[str, int] = {}
    path_: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path_.append(name)
        for other in sorted(graph[name]):
            if state.get(other) == 1:
                return [*path_[path_.index(other) :], other]
            if other not in state and (cycle := visit(other)):
                return cycle
        state[name] = 2
        path_.pop()
        return None

    for name in sorted(graph):
        if name not in state and (cycle := visit(name)):
            print("dependency cycle: " + " -> ".join(cycle), file=sys.stderr)
            return 1
    print(f"no dependency cycle among {len(resources)} resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
