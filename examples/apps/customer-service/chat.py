"""Try the served customer-service assistant with the openai client: a multi-turn chat with its history.

Each customer turn is first classified by the intent model (`/v1/predict` of `tunelab serve`); the predicted intent
becomes the system message, and the whole conversation so far goes to `/v1/chat/completions`, so the assistant
answers with the history in view. The transcript is written as Markdown.

    python examples/apps/customer-service/chat.py --base-url http://127.0.0.1:8000/v1 --out transcript.md
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request

TURNS = [
    "hi, I ordered a pair of running shoes yesterday and I want to cancel that order",
    "it is order 48213. how long will it take to get my money back?",
    "thanks. can I also change the shipping address of my other order?",
]
SYSTEM = "You are a customer-service agent. Customer intent: {}"  # as task.system_template in assistant.yaml


def predict_intent(base_url: str, model: str, text: str) -> tuple[str, float]:
    body = json.dumps({"model": model, "input": text}).encode()
    req = urllib.request.Request(base_url + "/predict", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        out = json.load(resp)["data"][0]
    return out["label"], out["probs"][out["label"]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True, help="the server's /v1 URL")
    p.add_argument("--assistant", default="assistant", help="served name of the assistant run")
    p.add_argument("--intent", default="intent", help="served name of the intent classifier run")
    p.add_argument("--max-tokens", type=int, default=160)
    p.add_argument("--out", required=True, help="Markdown transcript to write")
    args = p.parse_args(argv)

    from openai import OpenAI

    client = OpenAI(base_url=args.base_url, api_key="unused")  # tunelab serve without --api-key accepts any key
    history: list[dict] = []
    lines = ["# Customer-service transcript", "", f"Served by `tunelab serve` at {args.base_url}; greedy decoding.", ""]
    for turn in TURNS:
        intent, prob = predict_intent(args.base_url, args.intent, turn)
        history.append({"role": "user", "content": turn})
        messages = [{"role": "system", "content": SYSTEM.format(intent)}, *history]
        reply = client.chat.completions.create(
            model=args.assistant, messages=messages, max_tokens=args.max_tokens, temperature=0
        )
        answer = reply.choices[0].message.content
        history.append({"role": "assistant", "content": answer})
        lines += [f"**Customer** (intent `{intent}`, p={prob:.2f}): {turn}", "", f"**Assistant**: {answer}", ""]
        print(f"> {turn}\n[{intent} {prob:.2f}] {answer}\n", file=sys.stderr)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
