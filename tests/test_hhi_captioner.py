"""Study C captioner: the authors' beam ranking against an exhaustive reference on hand-made language models,
diverse beam groups, ClipCap's released checkpoint layout (fixture written here key by key), EncDec bundles."""
import itertools
import math

import numpy as np
import pytest
import torch

from hhperc.formats import FormatError
from hhperc.hhi import captioner as HC

END = 4   # token ids: 0 <s>, 1 A, 2 B, 3 C, 4 <e>


def table_step(table):
    "A language model given as {prefix tuple (after <s>): next-token probabilities}; unknown prefixes end."
    def step(seqs):
        rows = [table.get(tuple(s[1:]), [0, 0, 0, 0, 1.0]) for s in seqs.tolist()]
        return torch.tensor(rows, dtype=torch.float64).clamp(min=1e-12).log()
    return step


def exhaustive(table, max_len):
    "Every finished sequence up to max_len tokens with its probability (the independent reference)."
    out = {}
    for n in range(1, max_len + 1):
        for body in itertools.product([1, 2, 3], repeat=n - 1):
            p, prefix = 1.0, ()
            for t in body + (END,):
                p *= table.get(prefix, [0, 0, 0, 0, 1.0])[t]; prefix += (t,)
            if p > 0: out[body + (END,)] = p
    return out


# A (0.6) then <e> (0.55): 0.33; B (0.4) C (0.9) <e> (0.9): 0.324; the sum prefers A <e>, the mean per token B C <e>
TOY = {(): [0, .6, .4, 0, 0], (1,): [0, 0, .15, .3, .55], (2,): [0, 0, 0, .9, .1], (2, 3): [0, 0, 0, .1, .9],
       (1, 3): [0, 0, 0, 0, 1.0], (1, 2): [0, 0, 0, 0, 1.0], (2, 3, 3): [0, 0, 0, 0, 1.0]}


def test_rankings_differ_on_hand_made_vocabulary():
    ref = exhaustive(TOY, 4)
    by_sum = max(ref, key=lambda s: math.log(ref[s]))
    by_mean = max(ref, key=lambda s: math.log(ref[s]) / len(s))
    assert by_sum == (1, END) and by_mean == (2, 3, END)          # the two rankings disagree here
    authors = HC.beam_search(table_step(TOY), [0], [END], beam_k=3, max_len=4)
    assert tuple(authors[0][0]) == by_sum and math.isclose(authors[0][1], math.log(0.33), rel_tol=1e-6)
    hf_like = HC.beam_search(table_step(TOY), [0], [END], beam_k=3, max_len=4, length_penalty=1.0)
    assert tuple(hf_like[0][0]) == by_mean and math.isclose(hf_like[0][1], math.log(0.324) / 3, rel_tol=1e-6)


def test_wide_beam_equals_exhaustive_search_on_random_models():
    rng = np.random.default_rng(0)
    for _ in range(5):
        table = {}
        for n in range(4):
            for prefix in itertools.product([1, 2, 3], repeat=n):
                p = rng.dirichlet(np.ones(4)); table[prefix] = [0.0, *p]
        ref = exhaustive(table, 4)
        got = HC.beam_search(table_step(table), [0], [END], beam_k=81, max_len=4)
        want = sorted(ref.items(), key=lambda kv: -kv[1])
        assert [tuple(s) for s, _ in got[:5]] == [s for s, _ in want[:5]]
        assert np.allclose([sc for _, sc in got[:5]], [math.log(p) for _, p in want[:5]])


def test_finished_beams_leave_the_beam():
    # beam_k = 2: A <e> finishes at step 2; only one beam is live afterwards (the authors' shrinking beam)
    calls = []
    step = table_step(TOY)
    def counting(seqs): calls.append(len(seqs)); return step(seqs)
    out = HC.beam_search(counting, [0], [END], beam_k=2, max_len=4)
    assert calls == [1, 2, 1, 1]
    assert [tuple(s) for s, _ in out] == [(1, END), (2, 3, END)]


def test_diverse_groups():
    plain = HC.beam_search(table_step(TOY), [0], [END], beam_k=2, max_len=4, groups=2, diversity=0.0)
    assert [s[0] for s, _ in plain] == [1, 1]                       # no penalty: both groups take A
    div = HC.beam_search(table_step(TOY), [0], [END], beam_k=2, max_len=4, groups=2, diversity=5.0)
    assert sorted(s[0] for s, _ in div) == [1, 2]                   # the second group avoids A
    assert np.allclose(sorted(sc for _, sc in div), sorted([math.log(.33), math.log(.324)]))


def test_no_finished_beam_returns_the_best_live_one():
    never = {(): [0, .7, .3, 0, 0], (1,): [0, .9, .1, 0, 0], (2,): [0, .1, .9, 0, 0]}
    step = lambda seqs: torch.tensor([never.get(tuple(s[1:2]) if len(s) > 1 else (), [0, .5, .5, 0, 0]) for s in seqs.tolist()]).clamp(min=1e-12).log()
    out = HC.beam_search(step, [0], [END], beam_k=2, max_len=2)
    assert len(out) == 1 and out[0][0] == [1, 1] and math.isclose(out[0][1], math.log(.63), rel_tol=1e-5)


# ---- ClipCap's released layout, written here key by key ----

def _clipcap_file(path, d=16, layers=2, vocab=None, prefix_len=10, clip_dim=8, extra=None):
    from transformers import GPT2Config, GPT2LMHeadModel
    from hhperc.models import tiny_tokenizer
    vocab = vocab or len(tiny_tokenizer())
    torch.manual_seed(1)
    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=d, n_layer=layers, n_head=1, n_positions=64, n_inner=2 * d))
    sd = {"clip_project.model.0.weight": torch.randn(prefix_len * d // 2, clip_dim), "clip_project.model.0.bias": torch.randn(prefix_len * d // 2),
          "clip_project.model.2.weight": torch.randn(prefix_len * d, prefix_len * d // 2) * 0.1, "clip_project.model.2.bias": torch.randn(prefix_len * d)}
    for k, v in gpt.state_dict().items(): sd["gpt." + k] = v
    for i in range(layers):
        sd[f"gpt.transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
        sd[f"gpt.transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    sd.update(extra or {})
    torch.save(sd, path)
    return sd, gpt


def test_load_clipcap_reproduces_the_checkpoint(tmp_path):
    sd, gpt = _clipcap_file(tmp_path / "conceptual_weights.pt")
    m, tok = HC.load_clipcap(tmp_path / "conceptual_weights.pt", "clipcap_cc")
    assert (m.prefix_len, m.clip_dim, m.hidden) == (10, 8, 80)
    x = torch.randn(3, 8)
    h = torch.tanh(x @ sd["clip_project.model.0.weight"].T + sd["clip_project.model.0.bias"])
    want = (h @ sd["clip_project.model.2.weight"].T + sd["clip_project.model.2.bias"]).view(3, 10, 16)
    assert torch.allclose(m.prefix(x), want, atol=1e-5)            # ClipCap's MLP: Linear, Tanh, Linear
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(m.decoder(input_ids=ids).logits, gpt.eval()(input_ids=ids).logits, atol=1e-5)
    # zero-shot: no BOS, captions end at "." or the end token; fine-tuning: BOS after the prefix
    assert m.bos_id is None and tok.convert_tokens_to_ids(".") in m.end_ids
    ft, _ = HC.load_clipcap(tmp_path / "conceptual_weights.pt", "clipcap_cc", finetune=True)
    assert ft.prefix(x).shape == (3, 11, 16) and ft.lead == "_ "


def test_load_clipcap_wrong_files_name_the_setting(tmp_path):
    with pytest.raises(FormatError, match="models.clipcap_coco"):
        HC.load_clipcap(tmp_path / "nothing.pt", "clipcap_coco")
    (tmp_path / "pickle.pt").write_bytes(b"\x80\x04junk")
    with pytest.raises(FormatError, match="unreadable"):
        HC.load_clipcap(tmp_path / "pickle.pt", "clipcap_coco")
    torch.save({"clip_project.linear.weight": torch.zeros(2, 2), "clip_project.prefix_const": torch.zeros(2, 2),
                "clip_project.transformer.layers.0.attn.to_queries.weight": torch.zeros(2, 2)}, tmp_path / "transformer_weights.pt")
    with pytest.raises(FormatError, match="missing gpt.transformer.wte.weight"):
        HC.load_clipcap(tmp_path / "transformer_weights.pt", "clipcap_coco")
    _clipcap_file(tmp_path / "vocab.pt", vocab=100)
    with pytest.raises(FormatError, match="vocabulary"):
        HC.load_clipcap(tmp_path / "vocab.pt", "clipcap_cc_ww")


def test_clipcap_file_is_not_executed(tmp_path):
    "weights_only loading: a checkpoint that pickles a callable is refused, not run."
    class Boom:
        def __reduce__(self): return (print, ("ran",))
    torch.save({"x": Boom()}, tmp_path / "evil.pt")
    with pytest.raises(FormatError, match="unreadable"):
        HC.read_clipcap_state(tmp_path / "evil.pt", "clipcap_cc")


def test_encdec_bundle_round_trip(tmp_path):
    from hhperc.models import tiny_gpt2
    dec, tok = tiny_gpt2()
    torch.manual_seed(0)
    m = HC.EncDecCaptioner(dec, 32, HC.bos_id(tok))
    emb = torch.randn(2, 32)
    b = HC.CaptionerBundle(m, tok, "tiny", "tiny", HC.CaptionerConfig(num_beams=3, num_return=2, max_len=5))
    HC.save_bundle(b, tmp_path / "encdec")
    b2 = HC.load_bundle(tmp_path / "encdec")
    assert isinstance(b2.model, HC.EncDecCaptioner)
    g1 = HC.generate(m, emb, tok, 3, 2, 5); g2 = HC.generate(b2.model, emb, tok, 3, 2, 5)
    assert [[t for t, _ in x] for x in g1] == [[t for t, _ in x] for x in g2]
    assert all(t.startswith("_ ") for x in g1 for t, _ in x)       # the authors prepend "_ " to the decoded text


@pytest.mark.parametrize("arch", ["prefix", "encdec"])
def test_cached_step_matches_full_recomputation(arch):
    from hhperc.models import tiny_gpt2
    dec, tok = tiny_gpt2()
    torch.manual_seed(2)
    m = HC.ClipPrefixCaptioner(dec, 32, bos_id=HC.bos_id(tok)) if arch == "prefix" else HC.EncDecCaptioner(dec, 32, HC.bos_id(tok))
    m.eval()
    state = m.encode(torch.randn(1, 32))
    full = lambda q: m.next_logprobs(state, q)
    for groups, div in ((1, 0.0), (3, 1.5)):
        want = HC.beam_search(full, m.start_ids, m.end_ids, 6, 7, groups, div)
        got = HC.beam_search(HC.cached_step(m, state), m.start_ids, m.end_ids, 6, 7, groups, div)
        assert [s for s, _ in got] == [s for s, _ in want]
        assert np.allclose([v for _, v in got], [v for _, v in want], atol=1e-4)


def _clipcap_reference_mapper(sd, x, clip_len, heads=8):
    "ClipCap's TransformerMapper written out with einsum, straight from the state dict (the independent reference)."
    import torch.nn.functional as F
    p = lambda k: sd["clip_project." + k]
    h = torch.cat([(x @ p("linear.weight").T + p("linear.bias")).view(len(x), clip_len, -1), p("prefix_const").expand(len(x), -1, -1)], 1)
    layers = sorted({int(k.split(".")[3]) for k in sd if k.startswith("clip_project.transformer.layers.")})
    for i in layers:
        L = lambda k: p(f"transformer.layers.{i}.{k}")
        y = F.layer_norm(h, h.shape[-1:], L("norm1.weight"), L("norm1.bias")); b, n, c = y.shape
        q = (y @ L("attn.to_queries.weight").T).reshape(b, n, heads, c // heads)
        kv = (y @ L("attn.to_keys_values.weight").T).reshape(b, n, 2, heads, c // heads)
        att = (torch.einsum("bnhd,bmhd->bnmh", q, kv[:, :, 0]) * (c // heads) ** -0.5).softmax(dim=2)
        out = torch.einsum("bnmh,bmhd->bnhd", att, kv[:, :, 1]).reshape(b, n, c)
        h = h + out @ L("attn.project.weight").T + L("attn.project.bias")
        z = F.layer_norm(h, h.shape[-1:], L("norm2.weight"), L("norm2.bias"))
        h = h + torch.relu(z @ L("mlp.fc1.weight").T + L("mlp.fc1.bias")) @ L("mlp.fc2.weight").T + L("mlp.fc2.bias")
    return h[:, clip_len:]


def test_transformer_mapping_checkpoint(tmp_path):
    d, clip_len, prefix_len, clip_dim = 16, 3, 5, 8
    g = torch.Generator().manual_seed(4)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.3
    extra = {"clip_project.linear.weight": r(clip_len * d, clip_dim), "clip_project.linear.bias": r(clip_len * d),
             "clip_project.prefix_const": r(prefix_len, d)}
    for i in range(2):
        pre = f"clip_project.transformer.layers.{i}."
        extra.update({pre + "norm1.weight": 1 + r(d), pre + "norm1.bias": r(d), pre + "attn.to_queries.weight": r(d, d),
                      pre + "attn.to_keys_values.weight": r(2 * d, d), pre + "attn.project.weight": r(d, d), pre + "attn.project.bias": r(d),
                      pre + "norm2.weight": 1 + r(d), pre + "norm2.bias": r(d), pre + "mlp.fc1.weight": r(2 * d, d),
                      pre + "mlp.fc1.bias": r(2 * d), pre + "mlp.fc2.weight": r(d, 2 * d), pre + "mlp.fc2.bias": r(d)})
    sd, _ = _clipcap_file(tmp_path / "transformer_weights.pt", d=d, clip_dim=clip_dim, extra=extra)
    sd = {k: v for k, v in sd.items() if not k.startswith("clip_project.model.")}   # a transformer file has no MLP
    torch.save(sd, tmp_path / "transformer_weights.pt")
    m, _ = HC.load_clipcap(tmp_path / "transformer_weights.pt", "clipcap_coco")
    x = torch.randn(2, clip_dim)
    assert m.prefix_len == prefix_len and m.prefix(x).shape == (2, prefix_len, d)
    assert torch.allclose(m.prefix(x), _clipcap_reference_mapper(sd, x, clip_len), atol=1e-5)
    # a bundle of it saves and loads with its mapper
    b = HC.CaptionerBundle(m, HC.tiny_tokenizer(), "tiny", "tiny", HC.CaptionerConfig())
    HC.save_bundle(b, tmp_path / "tr_bundle")
    b2 = HC.load_bundle(tmp_path / "tr_bundle")
    assert torch.allclose(b2.model.prefix(x), m.prefix(x), atol=1e-6)
