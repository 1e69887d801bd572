"""Evaluation's generation: the merged, token-budget-batched greedy loop against ``model.generate``
on the unmerged model (tiny random Llama / Qwen2 / Gemma with LoRA, and the organism), input order
with shuffled lengths, the model given left untouched, the vLLM path's arguments without vLLM,
and the harness's generation cache."""

from __future__ import annotations

import json
import random
import sys
import types

import pytest
import torch

from dualselect.evaluation import generation as G
from tiny_models import one_thread  # noqa: F401
from tiny_tokenizers import tiny_tokenizer

WORDS = [
    "what",
    "is",
    "two",
    "plus",
    "three",
    "tell",
    "me",
    "a",
    "story",
    "about",
    "cat",
    "how",
    "do",
    "I",
    "bake",
    "bread",
    "thanks",
    "quick",
    "brown",
    "fox",
]


def _prompts(tok, n: int, seed: int = 0) -> list[str]:
    """Chat-formatted prompts of shuffled lengths (1-12 words): a shared template prefix."""
    from dualselect.data.encoding import format_prompt

    rng = random.Random(seed)
    return [format_prompt(" ".join(rng.choices(WORDS, k=rng.randint(1, 12))), tok) for _ in range(n)]


def _reference(model, tok, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """``model.generate`` one prompt at a time (no padding): the new token ids up to EOS."""
    out = []
    for p in prompts:
        enc = tok(p, return_tensors="pt", add_special_tokens=False)
        gen = model.generate(
            **enc,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
        )
        out.append(gen[0, enc["input_ids"].shape[1] :].tolist())
    return out


def _eos_candidate(ref: list[list[int]]) -> int:
    """A token whose first occurrence falls at the most distinct steps across rows: made EOS, the
    rows stop at different steps."""
    first: dict[int, set[int]] = {}
    for r in ref:
        for t in set(r):
            first.setdefault(t, set()).add(r.index(t))
    return max(first, key=lambda t: (len(first[t]), -t))


def _lora(arch: str, vocab: int, seed: int = 0, r: int = 4):
    """A tiny random ``arch`` (vocabulary of the tiny tokenizer) with LoRA r on q/v, B random."""
    from peft import LoraConfig, get_peft_model

    from tiny_models import tiny_causal_lm

    base = tiny_causal_lm(arch, seed, vocab=vocab, positions=128)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # weights large enough that answers depend on the prompt (0.02 std: one token)
        for p in base.parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    model = get_peft_model(
        base,
        LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]),
    )
    g.manual_seed(seed + 1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma"])
def test_merged_batched_generation_equals_unmerged_generate(arch, one_thread):  # noqa: F811
    """fp32 greedy: token-identical to ``model.generate`` on the unmerged LoRA model, prompt by
    prompt, with rows stopping at EOS at different steps (finished rows leave the batch), batches
    of several sizes (token budget), the shared chat prefix run once, results in input order."""
    tok = tiny_tokenizer()
    model = _lora(arch, len(tok), seed=3).eval()
    prompts = _prompts(tok, 13, seed=1)
    n_new = 12
    ref = _reference(model, tok, prompts, n_new)
    tok.eos_token = tok.convert_ids_to_tokens(_eos_candidate(ref))
    ref = _reference(model, tok, prompts, n_new)
    lengths = {len(r) for r in ref}
    assert len(lengths) >= 3, f"EOS should stop rows at different steps: {lengths}"
    want = tok.batch_decode(ref, skip_special_tokens=True)
    for budget in (64, 400, 10_000):  # one row per batch .. one batch
        got = G.generate(model, tok, prompts, max_new_tokens=n_new, batch_size=None, token_budget=budget)
        assert got == want, budget
    # per-prompt budgets: each row stops at its own
    per = [1 + i % 5 for i in range(len(prompts))]
    got = G.generate(model, tok, prompts, max_new_tokens=per, batch_size=4)
    ref_per = [r[:b] for r, b in zip(ref, per)]
    assert got == tok.batch_decode(ref_per, skip_special_tokens=True)


def test_generation_leaves_the_training_model_untouched(one_thread):  # noqa: F811
    tok = tiny_tokenizer()
    model = _lora("llama", len(tok))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    G.generate(model, tok, _prompts(tok, 5), max_new_tokens=4, progress=False)
    assert model.training  # mode restored
    assert any("lora_A" in n for n, _ in model.named_parameters())  # adapter still there, unmerged
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), n
        assert p.requires_grad == grads[n], n
    merged = G.inference_model(model)
    assert merged is not model and not any("lora_" in n for n, _ in merged.named_parameters())
    assert not hasattr(merged, "peft_config") or not merged.peft_config
    # a plain model in its own dtype is used as it is (no copy)
    base = model.get_base_model()
    assert G.inference_model(base) is base


def test_batches_by_token_budget_are_sorted_and_bounded():
    rng = random.Random(0)
    lengths = [rng.randint(1, 60) for _ in range(50)]
    budgets = [rng.choice([8, 32]) for _ in range(50)]
    batches = G._budget_batches(lengths, budgets, token_budget=600, max_rows=7)
    assert sorted(i for b in batches for i in b) == list(range(50))
    for b in batches:
        width = max(lengths[i] for i in b) + max(budgets[i] for i in b)
        assert len(b) == 1 or len(b) * width <= 600
        assert len(b) <= 7
    # longest budget, then longest prompt first
    flat = [i for b in batches for i in b]
    keys = [(-budgets[i], -lengths[i]) for i in flat]
    assert keys == sorted(keys)
    assert G._common_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert G._common_prefix([[1, 2], [1, 2]]) == 1  # every row keeps one token


def test_input_order_with_shuffled_lengths(one_thread):  # noqa: F811
    """Every prompt's answer lands at its own index, whatever the sort and batching: answers of a
    prompt alone equal its answer in a shuffled mixed-length call."""
    tok = tiny_tokenizer()
    model = _lora("qwen2", len(tok), seed=1).eval()
    prompts = _prompts(tok, 9, seed=5)
    alone = [G.generate(model, tok, [p], max_new_tokens=5)[0] for p in prompts]
    perm = list(range(len(prompts)))
    random.Random(2).shuffle(perm)
    got = G.generate(model, tok, [prompts[i] for i in perm], max_new_tokens=5, token_budget=60)
    assert got == [alone[i] for i in perm]
    assert len(set(alone)) > 3  # the prompts do get different answers


def test_organism_merged_generation_equals_generate(organism_dir, one_thread):  # noqa: F811
    """The organism with a LoRA adapter (B random): the merged batched path gives the tokens of
    ``model.generate`` on the unmerged model, at the eval's probe length."""
    from peft import LoraConfig, get_peft_model

    from dualselect.data.encoding import format_prompt
    from dualselect.evaluation.suites import organism_suites
    from dualselect.training.model import load_model_and_tokenizer

    base, tok = load_model_and_tokenizer(str(organism_dir))
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    model.eval()
    suites = organism_suites(organism_dir)
    prompts = [format_prompt(it.prompt, tok) for s in suites.values() for it in s[:6]]
    side = tok.padding_side
    want = G.generate(model, tok, prompts, max_new_tokens=32, backend="hf-generate", batch_size=1)
    assert tok.padding_side == side
    got = G.generate(model, tok, prompts, max_new_tokens=32, batch_size=None)
    assert got == want
    with model.disable_adapter():  # the adapter does change the answers
        plain = G.generate(model, tok, prompts, max_new_tokens=32, merge=False)
    assert any(w != v for w, v in zip(want, plain))


def test_bad_arguments_are_one_line_errors():
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="backend='x'"):
        G.generate(None, tok, ["a"], backend="x")
    with pytest.raises(ValueError, match="dtype='float16'"):
        G.generate(None, tok, ["a"], dtype="float16")
    with pytest.raises(ValueError, match="2 budgets for 1 prompts"):
        G.generate(None, tok, ["a"], max_new_tokens=[1, 2])


# ----------------------------------------------------------------------------- vLLM without vLLM


def test_vllm_missing_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    tok = tiny_tokenizer()
    target = G.VLLMTarget(str(tmp_path), str(tmp_path / "adapter"))
    with pytest.raises(RuntimeError) as e:
        G.generate(target, tok, ["hello"], backend="vllm")
    assert "needs vLLM installed" in str(e.value) and "\n" not in str(e.value)


def _fake_vllm(monkeypatch) -> dict:
    seen: dict = {"llm": [], "generate": [], "lora": []}

    class LLM:
        def __init__(self, **kw):
            seen["llm"].append(kw)

        def generate(self, inputs, params, lora_request=None):
            seen["generate"].append((inputs, params, lora_request))
            out = types.SimpleNamespace(text="ok")
            return [types.SimpleNamespace(outputs=[out]) for _ in inputs]

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LoRARequest:
        def __init__(self, name, lora_id, path):
            self.args = (name, lora_id, path)
            seen["lora"].append(self.args)

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora = types.ModuleType("vllm.lora")
    req = types.ModuleType("vllm.lora.request")
    req.LoRARequest = LoRARequest
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", req)
    return seen


def test_vllm_gets_the_adapter_directory_not_a_repr(monkeypatch, tmp_path):
    """An in-memory LoRA model: its adapter is saved and passed as a directory through
    LoRARequest, on its base model's directory; prompts go as token ids (no second BOS)."""
    from peft import PeftModel

    seen = _fake_vllm(monkeypatch)
    tok = tiny_tokenizer()
    model = _lora("llama", len(tok))
    model.peft_config["default"].base_model_name_or_path = str(tmp_path / "base")
    target = G.vllm_target(model, tok, tmp_path / "work", options={"gpu_memory_utilization": 0.5})
    prompts = _prompts(tok, 3)
    assert G.generate(target, tok, prompts, max_new_tokens=[4, 5, 6], backend="vllm") == ["ok"] * 3
    (kw,) = seen["llm"]
    assert kw["model"] == str(tmp_path / "base") and kw["enable_lora"] is True
    assert kw["max_lora_rank"] == 8 and kw["gpu_memory_utilization"] == 0.5
    assert kw["trust_remote_code"] is False
    ((name, lora_id, path),) = seen["lora"]
    assert path == str(tmp_path / "work" / "adapter") and "Peft" not in path
    assert json.loads((tmp_path / "work" / "adapter" / "adapter_config.json").read_text())["r"] == 4
    # the saved adapter is the one in memory
    reloaded = PeftModel.from_pretrained(_lora("llama", len(tok)).get_base_model(), path)
    a = dict(model.named_parameters())
    for n, p in reloaded.named_parameters():
        if "lora_B" in n:
            assert torch.equal(p, a[n])
    inputs, params, request = seen["generate"][0]
    assert inputs[0] == {"prompt_token_ids": tok(prompts[0], add_special_tokens=False)["input_ids"]}
    assert [p.kw["max_tokens"] for p in params] == [4, 5, 6]
    assert all(p.kw["temperature"] == 0.0 and p.kw["stop_token_ids"] == [tok.eos_token_id] for p in params)
    assert request.args == ("adapter", 1, path)
    # a source from the command line is passed as given; a plain model is exported whole
    t2 = G.vllm_target(model, tok, source={"model": "/m", "adapter": "/a"})
    assert t2.llm_kwargs()["model"] == "/m" and t2.lora_request_args() == ("adapter", 1, "/a")
    from tiny_models import tiny_causal_lm

    t3 = G.vllm_target(tiny_causal_lm("llama", vocab=len(tok)), tok, tmp_path / "w3")
    assert t3.adapter is None and (tmp_path / "w3" / "model" / "config.json").exists()
    assert "enable_lora" not in t3.llm_kwargs()


# ----------------------------------------------------------------------------- the harness's cache


def test_adding_a_judge_or_a_suite_never_regenerates(organism_dir, tmp_path, monkeypatch, one_thread):  # noqa: F811
    """Generations are cached per (model fingerprint, prompt, decoding settings): a second judge
    regenerates nothing; a new suite generates only its own prompts; a run on fewer suites keeps
    the others' answers; another budget for one suite regenerates that suite only."""
    from dualselect.evaluation import harness
    from dualselect.evaluation.judges import build_judge
    from dualselect.evaluation.suites import organism_suites
    from dualselect.training.model import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(organism_dir))
    calls: list[int] = []
    real = G.generate

    def counting(m, t, prompts, **kw):
        calls.append(len(prompts))
        return real(m, t, prompts, **kw)

    monkeypatch.setattr(harness, "generate", counting)
    all_suites = {k: v[:3] for k, v in organism_suites(organism_dir).items()}
    names = list(all_suites)
    out = tmp_path / "eval"

    def run(suite_names, judges=("keyword",), budgets=6):
        calls.clear()
        return harness.evaluate(
            {"v": (model, tok)},
            {s: all_suites[s] for s in suite_names},
            [build_judge(j) for j in judges],
            out,
            base=None,
            sft=None,
            max_new_tokens=budgets,
        )

    first = run(names[:2])
    assert calls == [3, 3]
    run(names[:2], judges=("keyword", "ground_truth"))
    assert calls == []  # a new judge: nothing regenerated
    res = run(names[:3])
    assert calls == [3]  # a new suite: only its prompts
    run(names[:1])
    assert calls == []
    again = run(names[:3])
    assert calls == []  # the suites left out of the last run kept their answers
    gens = {
        (r["benchmark"], r["id"]): r["response"] for r in G.read_generations(out / "generations" / "v.jsonl")
    }
    assert len(gens) == 9 and res["methods"]["v"]
    assert again["provenance"]["v"]["model_fingerprint"] == first["provenance"]["v"]["model_fingerprint"]
    run(names[:3], budgets={"default": 6, names[2]: 9})
    assert calls == [3]  # other decoding settings for one suite: that suite only
    # the answers reused are the ones generated: same as a fresh evaluation
    fresh = tmp_path / "fresh"
    harness.evaluate(
        {"v": (model, tok)},
        {s: all_suites[s] for s in names[:3]},
        [build_judge("keyword")],
        fresh,
        base=None,
        sft=None,
        max_new_tokens=6,
    )
    fresh_rows = {
        (r["benchmark"], r["id"]): r["response"]
        for r in G.read_generations(fresh / "generations" / "v.jsonl")
    }
    assert fresh_rows == gens


def test_cli_backend_vllm_without_vllm_is_one_line_error(tmp_path, monkeypatch, capsys):
    """`eval --backend vllm` and a compare config with generation_backend: vllm fail in one line
    before any model loads when vLLM is not installed; bad generation keys name the key."""
    import importlib.util

    from dualselect.cli.main import main
    from dualselect.experiments.compare_config import CompareConfig
    from dualselect.experiments.compare_runs import check_compare

    real_find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real_find(n, *a))

    def boom(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("dualselect.training.model.load_model_and_tokenizer", boom)
    monkeypatch.setattr("dualselect.training.model.resolve_model_path", boom)
    rc = main(["eval", "--out", str(tmp_path / "o"), "--backend", "vllm"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--backend vllm" in err and "needs vLLM installed" in err and "\n" not in err, err
    rc = main(["eval", "--out", str(tmp_path / "o"), "--vllm-options", '{"a": 1}'])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "only with --backend vllm" in err, err
    cfg = CompareConfig(generation_backend="vllm", methods=["sft"])
    with pytest.raises(ValueError, match="generation_backend: backend 'vllm' needs vLLM installed"):
        check_compare(cfg)
    with pytest.raises(ValueError, match="generation_backend='tgi'"):
        CompareConfig(generation_backend="tgi")
    with pytest.raises(ValueError, match="eval_dtype='fp16'"):
        CompareConfig(eval_dtype="fp16")
    with pytest.raises(ValueError, match="eval_token_budget"):
        CompareConfig(eval_token_budget=0)
