"""The registry of benchmark loaders, as data (lm-eval style): name, hub source, fields, kind,
generation budget. :mod:`dualselect.evaluation.benchmarks` reads the published formats these
entries describe; :mod:`dualselect.evaluation.suites` names the suites built from them."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: str  # harmful | benign | over_refusal | capability
    hub_id: str | None
    split: str
    prompt_field: str
    config: str | None = None
    gold_field: str | None = None
    category_field: str | None = None
    labels: tuple[str, ...] = ()  # classification label words, by label index
    note: str = ""
    extra: dict = field(default_factory=dict)
    # generation budget (new tokens): long enough for the answer format the metric reads (a
    # label word needs a few tokens; GSM8K's longest gold solution is 173 words, so 512, where
    # lm-eval's default max_gen_toks of 256 can cut the "#### N" line)
    max_new_tokens: int = 256


REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            "hh_rlhf",
            "harmful",
            "Anthropic/hh-rlhf",
            "test",
            "chosen",
            extra={"data_dir": "harmless-base"},
            note="harmless-base test prompts = first human turn; chosen responses can be a reference pool",
        ),
        Benchmark(
            "hex_phi",
            "harmful",
            None,
            "train",
            "prompt",
            category_field="category",
            note="gated licence: give a local path (one CSV per category, one prompt per line, no header)",
        ),
        Benchmark("advbench", "harmful", "walledai/AdvBench", "train", "goal", gold_field="target"),
        Benchmark(
            "harmbench",
            "harmful",
            "walledai/HarmBench",
            "train",
            "Behavior",
            category_field="SemanticCategory",
        ),
        Benchmark(
            "strongreject",
            "harmful",
            "walledai/StrongREJECT",
            "train",
            "forbidden_prompt",
            category_field="category",
        ),
        Benchmark(
            "beavertails",
            "harmful",
            "PKU-Alignment/BeaverTails",
            "30k_test",
            "prompt",
            category_field="category",
        ),
        Benchmark("xstest", "over_refusal", "walledai/XSTest", "test", "prompt", category_field="type"),
        Benchmark(
            "gsm8k",
            "capability",
            "openai/gsm8k",
            "test",
            "question",
            config="main",
            gold_field="answer",
            max_new_tokens=512,
        ),
        Benchmark("slimorca", "benign", "Open-Orca/SlimOrca", "train", "conversations"),
        Benchmark(
            "sst2",
            "capability",
            "stanfordnlp/sst2",
            "validation",
            "sentence",
            gold_field="label",
            labels=("negative", "positive"),
            max_new_tokens=16,
        ),
        Benchmark(
            "ag_news",
            "capability",
            "fancyzhx/ag_news",
            "test",
            "text",
            gold_field="label",
            labels=("World", "Sports", "Business", "Sci/Tech"),
            max_new_tokens=16,
        ),
    ]
}
