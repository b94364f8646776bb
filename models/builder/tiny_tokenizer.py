"""A deterministic 256-token BPE tokenizer for tiny random test models: ASCII pieces only (no
byte fallback), so any sequence of its ids decodes to the same text however it is split, and a
model with it stays small enough to keep in the repository.

    tiny_tokenizer.py OUT/tokenizer.json
"""
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CORPUS = """
The kitchen light is on. Turn off the lights in the living room. What is the weather like today?
Set a timer for ten minutes. Play some music in the bedroom. How warm is it outside?
Once upon a time there was a small house by the sea, and a lamp that never went out.
The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 , . ! ? ; : ' " ( ) - +
""" * 8


def build():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=256,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=[chr(c) for c in range(32, 127)],
        show_progress=False,
    )
    tok.train_from_iterator([CORPUS], trainer)
    return tok


if __name__ == "__main__":
    build().save(sys.argv[1])
