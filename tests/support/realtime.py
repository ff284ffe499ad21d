"""OpenAI Realtime's shapes as the tests write them: where a placed call lives, what a user
says over the data channel, and a response's usage."""

from __future__ import annotations

import re
from typing import Any

# A placed call's Location, at OpenAI (and the emulator) and at the function alike.
LOCATION = re.compile(r"^/v1/realtime/calls/(rtc_[0-9a-f]+)$")


def user_says(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def usage(
    text_in: int = 0,
    audio_in: int = 0,
    image_in: int = 0,
    cached_text: int = 0,
    cached_audio: int = 0,
    cached_image: int = 0,
    text_out: int = 0,
    audio_out: int = 0,
) -> dict[str, Any]:
    """A response's usage with every token attributed to a modality."""
    cached = cached_text + cached_audio + cached_image
    return {
        "total_tokens": text_in + audio_in + image_in + text_out + audio_out,
        "input_tokens": text_in + audio_in + image_in,
        "output_tokens": text_out + audio_out,
        "input_token_details": {
            "text_tokens": text_in,
            "audio_tokens": audio_in,
            "image_tokens": image_in,
            "cached_tokens": cached,
            "cached_tokens_details": {
                "text_tokens": cached_text,
                "audio_tokens": cached_audio,
                "image_tokens": cached_image,
            },
        },
        "output_token_details": {"text_tokens": text_out, "audio_tokens": audio_out},
    }
