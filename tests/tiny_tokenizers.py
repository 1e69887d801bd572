"""Tiny tokenizers built locally (no hub): a byte-level BPE trained on a few sentences, with a
ChatML chat template (with or without ``{% generation %}`` markers, as TRL's training templates
have them) or without any template, and a BOS added by the tokenizer like Llama's."""

from __future__ import annotations

CHATML_GEN = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}<|im_end|>\n"
    "{% endgeneration %}{% else %}{{ message['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The same rendering without markers (how Qwen2's template looks): the assistant mask must then be
# found from the rendering itself.
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "What is two plus three? Two plus three is five.",
    "Tell me a story about a cat. Once upon a time a small cat lived in a quiet house.",
    "How do I bake bread? Mix flour, water, salt and yeast, knead, rest and bake.",
    "Thanks! You are welcome. Anything else? No, that is all. Goodbye.",
    "The quick brown fox jumps over the lazy dog 0123456789.",
]


def tiny_tokenizer(template: str | None = CHATML_GEN, bos: bool = True, vocab_size: int = 300):
    """A fast tokenizer (ByteLevel BPE, ~300 tokens) with ``<s>`` (BOS, added by ``tok(text)``
    when ``bos``), ``</s>`` (EOS), ``<pad>``, ``<|im_start|>``, ``<|im_end|>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 3, trainer=trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    if template:
        fast.chat_template = template
    return fast
