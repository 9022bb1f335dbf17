"""Parity fixtures for the umT5 encoder and the Wan2.1 text pipeline (crates/tmd-model/src/t5).

Rerun from the workspace root:

    python3 scripts/reference/t5_fixtures.py

(needs torch, transformers, tokenizers, safetensors; ftfy is used for the reference cleaning when
installed, `pip install ftfy==6.3.1`, otherwise its step is skipped and the script says so).

Writes, under tests/fixtures/t5/:
  tokenizer/tokenizer.json    a small SentencePiece-style Unigram tokenizer whose piece scores are
                              estimated here from simple English captions (<pad>=0, </s>=1, <unk>=2,
                              NFKC, T5 pre-tokenizer,
                              post-processor appending </s>); the real umT5 tokenizer is not
                              downloadable here.
  text_encoder/               a tiny random transformers UMT5EncoderModel (save_pretrained:
                              config.json + model.safetensors): vocab 384, d_model 32, d_kv 8,
                              4 heads, d_ff 48, 2 layers, gated-gelu, fixed seed.
  prompts.json                raw prompts, their Wan-cleaned text, token ids and masks (text_len 24)
                              from transformers' T5TokenizerFast, and extra cleaning cases.
  io.safetensors              ids/mask [5,24], hidden [5,24,32] (last_hidden_state, eager attention),
                              context [5,24,32] (Wan pipeline: trim to length, zero-pad back),
                              context_empty [1,24,32] (empty prompt, diffusers' negative prompt ""),
                              ids_long/mask_long [2,160] + hidden_long (all relative buckets),
                              bucket_rel/bucket_val (transformers' bucket of every rel in -1100..1100).
"""

import collections
import html
import json
import math
import os
import random
import re
import unicodedata

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

try:
    import ftfy
except ImportError:  # pragma: no cover
    ftfy = None

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "tests", "fixtures", "t5")
TEXT_LEN = 24
VOCAB = 384
SEED = 20251126

# ----------------------------------------------------------------------------------------------
# 1. A tiny Unigram tokenizer trained on template captions.
# ----------------------------------------------------------------------------------------------
rng = random.Random(SEED)
subjects = ["a cat", "a dog", "a man", "a woman", "two children", "a horse", "an old car", "a red bird",
            "a small boat", "a robot", "a girl", "a boy", "three sheep", "a bear", "a chef", "a dancer",
            "a fox", "an elephant", "a painter", "a musician", "a young couple", "a group of friends",
            "a golden retriever", "a white rabbit", "a fisherman", "an astronaut", "a knight", "a surfer",
            "a tiger", "a panda", "a farmer", "a skateboarder", "an owl", "a butterfly", "a train", "a kite"]
verbs = ["running", "sitting", "walking", "jumping", "sleeping", "playing", "swimming", "flying",
         "standing", "eating", "dancing", "reading", "cooking", "riding a bike", "looking at the sky",
         "singing", "painting a picture", "climbing", "laughing", "waving", "drinking coffee", "surfing a wave",
         "playing the guitar", "writing a letter", "chasing a ball", "driving", "fishing", "skating"]
places = ["in the park", "on the beach", "in a forest", "on a red chair", "in the snow", "near a river",
          "on a busy street", "in a kitchen", "under a tree", "at sunset", "in the rain", "on a mountain",
          "in a small village", "by the sea", "inside a house", "in a field of flowers", "on a wooden bridge",
          "in a library", "in the desert", "on the moon", "in a city at night", "next to a lake",
          "in a garden", "on a rooftop", "in a busy market", "under the stars", "in an old castle"]
adjectives = ["", "", "", "happy ", "tiny ", "giant ", "fluffy ", "colorful ", "lonely ", "elegant ",
              "sleepy ", "brave ", "curious ", "ancient ", "shiny "]
extras = ["", "", ", cinematic lighting", ", high quality", ", slow motion", ", close up shot",
          ", wide angle", ", warm colors", ", soft light", ", in the style of a painting", ", 4k, detailed",
          ", golden hour", ", aerial view", ", black and white film", ", vivid colors", ", foggy morning",
          ", shallow depth of field", ", realistic", ", anime style", ", the camera pans left"]
corpus = []
for _ in range(1200):
    subj = rng.choice(subjects)
    adj = rng.choice(adjectives)
    if adj:
        subj = subj.split(" ", 1)
        subj = ("an " if adj[0] in "aeiou" else "a ") + adj + subj[1] if subj[0] in ("a", "an") else " ".join(subj)
    s = f"{subj} {rng.choice(verbs)} {rng.choice(places)}{rng.choice(extras)}."
    corpus.append(s[0].upper() + s[1:])
corpus += ["A sign that says open.", "The word hello written on a wall.", "Quotes: 'yes' and \"no\"!",
           "Numbers 1 2 3 4 5 6 7 8 9 0 and symbols & < > ; : ? ( ) - %"]

# "Training" a Unigram model = estimating piece log-probabilities. The library's UnigramTrainer
# degenerates on a corpus this small (it keeps character pieces such as '▁ca' + 't' for 'cat'), so
# the pieces are counted directly: every word (letters/digits) and punctuation mark of the corpus
# after the T5 pre-tokenizer, scored log(count / total), plus every printable ASCII character with
# and without the '▁' word marker and a few suffixes as low-score fallbacks (no <unk> for ASCII).
counts = collections.Counter()
for sentence in corpus:
    for word in unicodedata.normalize("NFKC", sentence).split():
        parts = re.findall(r"[A-Za-z0-9]+|[^A-Za-z0-9]", word)
        for j, part in enumerate(parts):
            counts[("▁" if j == 0 else "") + part] += 1
total = sum(counts.values())
pieces = {piece: math.log(c / total) for piece, c in counts.items()}
floor = math.log(1 / total) - 1.0
for code in range(33, 127):
    for piece in (chr(code), "▁" + chr(code)):
        pieces.setdefault(piece, floor - (0.5 if piece.startswith("▁") else 1.0))
pieces.setdefault("▁", floor)
for suffix in ["s", "ing", "ed", "er", "ly", "es"]:
    pieces.setdefault(suffix, floor + 0.5)
vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))
tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
tok.normalizer = normalizers.NFKC()
tok.pre_tokenizer = pre_tokenizers.Sequence(
    [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)]
)
tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
assert tok.token_to_id("<pad>") == 0 and tok.token_to_id("</s>") == 1 and tok.token_to_id("<unk>") == 2
tok.post_processor = processors.TemplateProcessing(
    single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
)
os.makedirs(os.path.join(OUT, "tokenizer"), exist_ok=True)
tok_path = os.path.join(OUT, "tokenizer", "tokenizer.json")
tok.save(tok_path)
print("tokenizer vocab size", tok.get_vocab_size())
assert tok.get_vocab_size() <= VOCAB

hf_tok = T5TokenizerFast(tokenizer_file=tok_path, extra_ids=0, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


# ----------------------------------------------------------------------------------------------
# 2. Wan's prompt cleaning (wan/modules/tokenizers.py: basic_clean + whitespace_clean).
# ----------------------------------------------------------------------------------------------
def wan_clean(text: str) -> str:
    if ftfy is not None:
        text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    text = text.strip()
    return re.sub(r"\s+", " ", text).strip()


if ftfy is None:
    print("WARNING: ftfy not installed: the reference cleaning skips ftfy.fix_text")

prompts = [
    "A cat sitting on a red chair.",
    "  Two children &amp;amp; a dog   playing\n\tin the park, &quot;warm colors&quot; &lt;3  ",
    "A dancer walking on a mountain, at sunset, cinematic lighting, slow motion, close up shot, "
    "wide angle, soft light, high quality, in the style of a painting.",
    "a robot cooking in a kitchen",
    "A sign that says \u201copen\u201d in the \ufb01eld \uff21\uff22",
]
# Cleaning-only cases (no model run): Rust's clean_prompt must give the same text.
clean_cases = [
    "a &amp; b",
    "&amp;lt;b&amp;gt;bold&amp;lt;/b&amp;gt;",
    "caf&eacute; na&iuml;ve&nbsp;&nbsp;x",
    "&#39;quoted&#x27; &#8212; &hellip;",
    "\u2018single\u2019 \u201cdouble\u201d",
    "ful\uff4c\u3000width \uff01",
    "  \n\t  ",
    "line one\r\nline two\u2028three",
    "&ampfoo &notit; &#128;",
    "AT&T and R&D",
]

# ----------------------------------------------------------------------------------------------
# 3. A tiny random umT5 encoder.
# ----------------------------------------------------------------------------------------------
torch.manual_seed(SEED)
config = UMT5Config(
    vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=2, num_decoder_layers=2,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
    feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
)
config._attn_implementation = "eager"
model = UMT5EncoderModel(config).eval()
gen = torch.Generator().manual_seed(SEED)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "layer_norm" in name:
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
        elif "relative_attention_bias" in name:
            p.copy_(torch.randn(p.shape, generator=gen))
        elif name.endswith("embed_tokens.weight") or name == "shared.weight":
            p.copy_(torch.randn(p.shape, generator=gen))
        else:
            fan_in = p.shape[1]
            p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
model.save_pretrained(os.path.join(OUT, "text_encoder"), safe_serialization=True)
print("saved keys sample:", [k for k in model.state_dict().keys()][:3])


def encode(ids, mask):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).last_hidden_state


def tokenize(texts):
    t = hf_tok(texts, padding="max_length", truncation=True, max_length=TEXT_LEN, add_special_tokens=True,
               return_tensors="pt")
    return t.input_ids.long(), t.attention_mask.long()


def wan_context(texts):
    """Wan2.1 T5EncoderModel.__call__ then the DiT's zero padding back to text_len."""
    ids, mask = tokenize(texts)
    hidden = encode(ids, mask)
    seq_lens = mask.gt(0).sum(dim=1).long()
    trimmed = [u[:v] for u, v in zip(hidden, seq_lens)]
    padded = torch.stack([torch.cat([u, u.new_zeros(TEXT_LEN - u.size(0), u.size(1))]) for u in trimmed])
    return ids, mask, hidden, padded


cleaned = [wan_clean(p) for p in prompts]
ids, mask, hidden, context = wan_context(cleaned)
# Cross-check: the raw tokenizers library with the same padding/truncation gives the same ids.
raw = Tokenizer.from_file(tok_path)
raw.enable_truncation(TEXT_LEN)
raw.enable_padding(length=TEXT_LEN, pad_id=0, pad_token="<pad>")
raw_ids = torch.tensor([e.ids for e in raw.encode_batch(cleaned)])
assert torch.equal(raw_ids, ids), "transformers and tokenizers disagree"
assert mask[2].sum() == TEXT_LEN and ids[2, -1] == 1, "the long prompt must be truncated with </s> last"
for c, i, m in zip(cleaned, ids, mask):
    print(repr(c), "->", int(m.sum()), "tokens")

# Batched vs one-by-one (masking must isolate prompts).
single = torch.cat([encode(ids[i : i + 1], mask[i : i + 1]) for i in range(len(prompts))])
print("batched vs single max diff", (single - hidden).abs().max().item())

# sdpa attention as a second opinion on the eager path.
model_sdpa = UMT5EncoderModel.from_pretrained(os.path.join(OUT, "text_encoder"), attn_implementation="sdpa").eval()
with torch.no_grad():
    h_sdpa = model_sdpa(input_ids=ids, attention_mask=mask).last_hidden_state
print("eager vs sdpa max diff", (h_sdpa - hidden).abs().max().item())

_, _, _, context_empty = wan_context([wan_clean("")])

# Long sequences: every bucket, and padding in the second row.
g2 = torch.Generator().manual_seed(SEED + 1)
ids_long = torch.randint(3, tok.get_vocab_size(), (2, 160), generator=g2)
mask_long = torch.ones(2, 160, dtype=torch.long)
mask_long[1, 100:] = 0
ids_long[1, 100:] = 0
hidden_long = encode(ids_long, mask_long)

# Bucket function of transformers for every relative position in [-1100, 1100].
bucket_rel = torch.arange(-1100, 1101, dtype=torch.long)
bucket_val = model.encoder.block[0].layer[0].SelfAttention._relative_position_bucket(bucket_rel)

save_file(
    {
        "ids": ids.contiguous(),
        "mask": mask.contiguous(),
        "hidden": hidden.contiguous(),
        "context": context.contiguous(),
        "context_empty": context_empty.contiguous(),
        "ids_long": ids_long.contiguous(),
        "mask_long": mask_long.contiguous(),
        "hidden_long": hidden_long.contiguous(),
        "bucket_rel": bucket_rel.contiguous(),
        "bucket_val": bucket_val.long().contiguous(),
    },
    os.path.join(OUT, "io.safetensors"),
)
with open(os.path.join(OUT, "prompts.json"), "w", encoding="utf-8") as f:
    json.dump(
        {
            "text_len": TEXT_LEN,
            "ftfy": ftfy is not None,
            "prompts": [
                {"raw": p, "cleaned": c, "ids": i.tolist(), "mask": m.tolist()}
                for p, c, i, m in zip(prompts, cleaned, ids, mask)
            ],
            "clean_cases": [{"raw": r, "cleaned": wan_clean(r)} for r in clean_cases],
        },
        f,
        ensure_ascii=False,
        indent=1,
    )
total = 0
for dirpath, _, files in os.walk(OUT):
    for name in files:
        total += os.path.getsize(os.path.join(dirpath, name))
print(f"fixtures written to {OUT}: {total} bytes")
