"""Make the tiny BERT fixture of stackflow's sentence-encoder tests.

A randomly initialised BERT (2 layers, width 32, 4 heads) with a WordPiece tokenizer
trained on a few captions, saved the way Hugging Face models are published
(`config.json`, `model.safetensors`, `tokenizer.json`), and the reference: for each
caption of `captions.txt`, its token ids and the mean of the last hidden state over its
tokens (sentence-transformers' mean pooling), computed by `transformers`.

    pip install torch transformers tokenizers safetensors
    python3 tests/encoders/make_tiny_bert.py tests/fixtures/bert
"""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import BertWordPieceTokenizer
from tokenizers.processors import BertProcessing
from transformers import BertConfig, BertModel, BertTokenizerFast

CORPUS = [
    "a large red circle on a blue background",
    "a small green square on a white background",
    "a yellow triangle on an orange background",
    "a purple circle on a grey background",
    "the bird has a red crown and black wings",
    "this flower has white petals and a yellow center",
]

CAPTIONS = [
    "a red circle on a blue background",
    "a tiny purple triangle on white",
    "The bird has a RED crown!",
    "zebra",
]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(CORPUS, vocab_size=120, min_frequency=1)
    # As published models' tokenizer.json: [CLS] … [SEP] around every caption.
    wp.post_processor = BertProcessing(("[SEP]", wp.token_to_id("[SEP]")), ("[CLS]", wp.token_to_id("[CLS]")))
    wp.save(str(out / "tokenizer.json"))
    tok = BertTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=wp.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=2,
        layer_norm_eps=1e-12,
        hidden_act="gelu",
    )
    model = BertModel(config).eval()
    # Larger than BERT's N(0, 0.02) init, so the layers do visible work.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    model.save_pretrained(out, safe_serialization=True)
    for extra in ["generation_config.json"]:
        (out / extra).unlink(missing_ok=True)

    (out / "captions.txt").write_text("\n".join(CAPTIONS) + "\n")
    ids, pooled = [], []
    with torch.no_grad():
        for c in CAPTIONS:
            enc = tok(c, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
            ids.append(enc["input_ids"][0].tolist())
            pooled.append(h.mean(dim=0))
        # Padded together with an attention mask, mean pooling over the real tokens
        # gives the same sentence embeddings (sentence-transformers' batch path).
        enc = tok(CAPTIONS, return_tensors="pt", padding=True)
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        batched = (h * m).sum(1) / m.sum(1)
        assert torch.allclose(batched, torch.stack(pooled), atol=1e-5)
    save_file({"embeddings": torch.stack(pooled).contiguous()}, str(out / "reference.safetensors"))
    (out / "reference_ids.json").write_text(json.dumps(ids) + "\n")
    print(f"wrote {out}: vocab {config.vocab_size}, ids {ids}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/bert"))
