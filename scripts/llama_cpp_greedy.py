#!/usr/bin/env python3
"""llama.cpp's greedy tokens on SmolLM2's GGUF: the reference the quantized
path is checked against (workers/tests/smollm2_parity.rs).

For the 5 parity prompts of scripts/fixtures/llama_parity.py (their token
ids as transformers' chat template gives them, read from
tests/fixtures/generated/smollm2_expected.json so both references start
from the same ids), llama.cpp evaluates the prompt and picks 32 tokens by
argmax, not stopping at EOS, and records its top 5 logits at each step
(to tell a near tie in llama.cpp's own numbers). Writes tests/fixtures/llama_cpp_greedy.json,
which is committed: llama.cpp takes ~10 min to build (scripts/
setup_llama_cpp.sh), so CI reads the file instead of running this.
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "fixtures"))
from llama_parity import GREEDY_TOKENS, smollm2_gguf  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "llama_cpp_greedy.json"


def main() -> None:
    import llama_cpp
    import numpy as np

    expected = json.loads((ROOT / "tests" / "fixtures" / "generated" /
                           "smollm2_expected.json").read_text())
    gguf = smollm2_gguf()
    llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=512, n_threads=2, seed=0,
                          logits_all=True, verbose=False)
    cases = []
    for case in expected["cases"]:
        llm.reset()
        prompt = case["prompt_ids"]
        llm.eval(prompt)
        greedy, top5 = [], []
        for _ in range(GREEDY_TOKENS):
            logits = np.array(llm.scores[llm.n_tokens - 1])
            best = np.argsort(-logits, kind="stable")[:5]
            greedy.append(int(best[0]))
            top5.append([[int(t), float(logits[t])] for t in best])
            llm.eval([greedy[-1]])
        cases.append({"prompt_ids": prompt, "greedy": greedy, "top5": top5})
        print(f"{len(prompt)} prompt ids -> {llm.detokenize(greedy)!r}")
    OUT.write_text(json.dumps({
        "source": f"llama-cpp-python {llama_cpp.__version__} on {gguf.name}, "
                  "argmax over 32 steps from transformers' prompt ids; top5: "
                  "[token, logit] at each step",
        "cases": cases,
    }, separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
