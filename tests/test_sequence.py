"""The sequence task family: metrics against independent references, checks, surrogate network, G_R, learning."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU, CHRF

import metricloss as ml
from metricloss import Surrogate, evaluation
from metricloss.metrics import sequence as M
from metricloss.metrics.base import Metric
from metricloss.tasks import get_task
from metricloss.tasks import sequence as S
from profiles import examples

V, T = 12, 10
PAD = -100



@pytest.fixture(scope="module")
def task() -> S.SequenceTask:
    return S.SequenceTask(vocab_size=V, max_length=T)


def _one_hot_batch(hyps: list[list[int]], refs: list[list[int]], v: int = V, t: int = T):
    """Logits whose arg-max spells ``hyps`` (then token 0), targets ``refs`` padded with -100."""
    hyp = torch.zeros(len(hyps), t, dtype=torch.long)
    tgt = torch.full((len(refs), t), PAD, dtype=torch.long)
    for i, (h, r) in enumerate(zip(hyps, refs, strict=True)):
        hyp[i, : len(h)] = torch.tensor(h, dtype=torch.long)
        tgt[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return F.one_hot(hyp, v).float() * 3 + 0.1 * torch.randn(len(hyps), t, v).clamp(-1, 1), tgt


# ---- naive references, written independently of the library ----------------------------------------------


def _lev(a: list[int], b: list[int]) -> int:
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
    return d[len(a)][len(b)]


def _lcs(a: list[int], b: list[int]) -> int:
    d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = d[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(d[i - 1][j], d[i][j - 1])
    return d[len(a)][len(b)]


def _squad_f1(h: list[int], r: list[int]) -> float:
    if not h or not r:
        return float(h == r)
    same = sum((Counter(h) & Counter(r)).values())
    if same == 0:
        return 0.0
    p, rec = same / len(h), same / len(r)
    return 2 * p * rec / (p + rec)


def _rouge_l(h: list[int], r: list[int]) -> float:
    if not h or not r:
        return float(h == r)
    lcs = _lcs(h, r)
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def _norm_lev(h: list[int], r: list[int]) -> float:
    return _lev(h, r) / max(len(h), len(r)) if h or r else 0.0


def _words(s: list[int]) -> str:
    return " ".join("t" + str(i) for i in s)


def _sacre(scorer, h: list[int], r: list[int]) -> float:
    if not h or not r:
        return float(h == r)
    return scorer.sentence_score(_words(h), [_words(r)]).score / 100


REFERENCES = {
    "bleu": lambda h, r: _sacre(BLEU(effective_order=True), h, r),  # default 13a tokenizer
    "chrf": lambda h, r: _sacre(CHRF(), h, r),
    "edit_distance": _norm_lev,
    "token_f1": _squad_f1,
    "rouge_l": _rouge_l,
}


def _random_pairs(n: int, seed: int, v: int = V, t: int = T) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    refs, hyps = [], []
    for _ in range(n):
        length = int(torch.randint(1, t + 1, (), generator=g))
        ref = torch.randint(0, v, (length,), generator=g)
        keep = torch.rand(length, generator=g) < torch.rand((), generator=g)
        refs.append(ref.tolist())
        hyps.append(torch.where(keep, ref, torch.randint(0, v, (length,), generator=g)).tolist())
    return hyps, refs


# ---- metrics ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(REFERENCES))
def test_metric_matches_independent_reference_per_sentence(name):
    hyps, refs = _random_pairs(40, seed=1)
    logits, target = _one_hot_batch(hyps, refs)
    fn, _ = M._FUNCTIONS[name]
    got = fn(logits, target, reduction="none")
    want = torch.tensor([REFERENCES[name](h, r) for h, r in zip(hyps, refs, strict=True)], dtype=torch.float64)
    assert got.shape == (40,) and got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(fn(logits, target), want.mean(), rtol=0, atol=1e-12)
    assert 0 < float(want.std())  # the pairs are not all alike: the comparison can fail


@pytest.mark.parametrize("name", list(REFERENCES))
def test_metric_with_pad_id_scores_the_filtered_sentences(name):
    # pad_id = 0 is dropped from both sides: hypotheses become shorter or longer than their references.
    hyps, refs = _random_pairs(30, seed=2)
    hyps[0], refs[0] = [0, 0, 0], [0, 0]  # both empty after filtering: perfect
    hyps[1], refs[1] = [0, 0], [3, 4]  # empty hypothesis: worst
    logits, target = _one_hot_batch(hyps, refs)
    fn, _ = M._FUNCTIONS[name]
    got = fn(logits, target, pad_id=0, reduction="none")
    want = torch.tensor([REFERENCES[name]([x for x in h if x], [x for x in r if x])
                         for h, r in zip(hyps, refs, strict=True)], dtype=torch.float64)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert float(got[0]) == (0.0 if name == "edit_distance" else 1.0)
    assert float(got[1]) == (1.0 if name == "edit_distance" else 0.0)


def test_known_values():
    target = torch.tensor([[1, 2, 3, 4, PAD, PAD]])
    logits = F.one_hot(torch.tensor([[2, 3, 4, 4, 1, 1]]), 6).float()  # positions 4, 5 are ignored
    assert float(M.edit_distance(logits, target)) == 0.5  # delete 1, insert 4
    assert float(M.rouge_l(logits, target)) == 0.75  # LCS 2 3 4
    assert float(M.token_f1(logits, target)) == 0.75  # bags {2,3,4,4} vs {1,2,3,4}: 3 shared
    perfect = F.one_hot(target.clamp_min(0), 6).float()
    for name in ("bleu", "chrf", "token_f1", "rouge_l"):
        assert abs(float(M._FUNCTIONS[name][0](perfect, target)) - 1) < 1e-9
    assert float(M.edit_distance(perfect, target)) == 0.0


def test_padding_in_the_middle_is_ignored():
    target = torch.tensor([[5, PAD, 6, PAD, 7]])
    logits = F.one_hot(torch.tensor([[5, 0, 6, 1, 7]]), 8).float()
    assert M.decode(logits, target) == ([[5, 6, 7]], [[5, 6, 7]])
    assert float(M.edit_distance(logits, target)) == 0.0


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 5), min_size=1, max_size=8),
                          st.lists(st.integers(0, 5), min_size=1, max_size=8)), min_size=1, max_size=6))
def test_metric_properties(pairs):
    hyps = [h for h, _ in pairs]
    refs = [r for _, r in pairs]
    logits, target = _one_hot_batch(hyps, refs, v=6, t=8)
    out = {name: fn(logits, target, pad_id=0, reduction="none") for name, (fn, _) in M._FUNCTIONS.items()}
    for values in out.values():
        assert bool(((values >= -1e-12) & (values <= 1 + 1e-12)).all())
    # LCS <= shared bag of tokens, and lev >= max(|h|, |r|) - LCS
    assert bool((out["rouge_l"] <= out["token_f1"] + 1e-12).all())
    assert bool((out["rouge_l"] >= 1 - out["edit_distance"] - 1e-12).all())
    # identical sentences are perfect
    same = {name: fn(F.one_hot(target.clamp_min(0), 6).float(), target, reduction="none")
            for name, (fn, _) in M._FUNCTIONS.items()}
    for name, values in same.items():
        torch.testing.assert_close(values, torch.full_like(values, 0.0 if name == "edit_distance" else 1.0),
                                   rtol=0, atol=1e-9)


@pytest.mark.parametrize("pad_id", [None, 0])
def test_stacked_equals_per_batch(pad_id):
    task = S.SequenceTask(vocab_size=V, max_length=T, pad_id=pad_id)
    pred, target = task.random_batches(5, 6, torch.Generator().manual_seed(3))
    for name, metric in task.metrics.items():
        assert isinstance(metric, Metric) and metric.stacked is not None
        stacked = metric.evaluate(pred, target)
        loop = torch.tensor([metric(p, t) for p, t in zip(pred, target, strict=True)], dtype=torch.float64)
        torch.testing.assert_close(stacked, loop, rtol=0, atol=1e-12, msg=name)
    assert not task.metrics["edit_distance"].higher_is_better
    assert all(m.higher_is_better for n, m in task.metrics.items() if n != "edit_distance")


def test_metric_input_errors():
    logits, target = _one_hot_batch([[1, 2]], [[1, 2]])
    with pytest.raises(ValueError, match=r"`target` must have shape \(1, 10\)"):
        M.bleu(logits, target[:, :5])
    with pytest.raises(ValueError, match=r"`target` holds token indices outside \[0, 11\].*-100"):
        M.token_f1(logits, torch.full_like(target, -1))
    with pytest.raises(TypeError, match="`target` must be an integer tensor"):
        M.rouge_l(logits, target.float())
    with pytest.raises(ValueError, match=r"`pred` must be token logits of shape \(B, T, V\)"):
        M.chrf(logits[0], target[0])
    with pytest.raises(ValueError, match="`pad_id` must be None or a token id"):
        M.edit_distance(logits, target, pad_id=V)
    with pytest.raises(ValueError, match="`reduction` must be one of"):
        M.bleu(logits, target, reduction="sum")


# ---- task construction and checks -----------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"vocab_size": 1, "max_length": 5}, "`vocab_size` must be an integer >= 2"),
    ({"vocab_size": 5.0, "max_length": 5}, "`vocab_size`"),
    ({"vocab_size": 5, "max_length": 0}, "`max_length` must be an integer >= 1"),
    ({"vocab_size": 5, "max_length": True}, "`max_length`"),
    ({"vocab_size": 5, "max_length": 5, "pad_id": 5}, r"`pad_id` must be None or a token id in \[0, 4\]"),
    ({"vocab_size": 5, "max_length": 5, "pad_id": -100}, "`pad_id`"),
])
def test_task_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        S.SequenceTask(**kwargs)
    with pytest.raises(ValueError, match=match):
        get_task("sequence", **kwargs)


def test_config_round_trip_is_json_able(task):
    import json

    t = get_task("sequence", **json.loads(json.dumps(S.SequenceTask(V, T, pad_id=3).config())))
    assert isinstance(t, S.SequenceTask) and (t.vocab_size, t.max_length, t.pad_id) == (V, T, 3)
    assert json.loads(json.dumps(task.default_net_config())) == task.default_net_config()


def test_check_accepts_valid_inputs(task):
    pred, target = task.random_batches(2, 3, torch.Generator().manual_seed(0))
    task.check(pred[0], target[0])
    task.check(pred, target, stacked=True)
    task.check(pred[0, :, :4], target[0, :, :4].clamp_min(0))  # shorter T
    task.check(pred[0].double(), target[0])


P0, T0 = S.SequenceTask(vocab_size=V, max_length=T).random_batches(1, 4, torch.Generator().manual_seed(1))
P0, T0 = P0[0], T0[0]
ALL_PAD = T0.clone()
ALL_PAD[2] = PAD
NAN = P0.clone()
NAN[0, 0, 0] = float("nan")


@pytest.mark.parametrize(("pred", "target", "stacked", "exc", "match"), [
    pytest.param(P0[0], T0[0], False, ValueError, r"`pred` must be token logits of shape \(B, T, V\)", id="2d"),
    pytest.param(P0, T0, True, ValueError, r"shape \(N, B, T, V\)", id="stacked-3d"),
    pytest.param(torch.randn(4, T, 1), T0.clamp_max(0), False, ValueError, r"with V >= 2", id="V-1"),
    pytest.param(torch.randn(4, 1025, V), torch.zeros(4, 1025, dtype=torch.long), False, ValueError,
                 r"T <= 1024 positions \(the longest .* windows of at most 1024", id="too-long"),
    pytest.param(torch.randn(0, T, V), torch.zeros(0, T, dtype=torch.long), False, ValueError, "empty batch",
                 id="empty"),
    pytest.param(P0, T0[:, :5], False, ValueError, r"`target` must have shape \(4, 10\)", id="target-shape"),
    pytest.param(P0, T0.float(), False, TypeError, "`target` must be an integer tensor", id="target-float"),
    pytest.param(P0.long(), T0, False, TypeError, "`pred` must be a floating-point tensor", id="pred-int"),
    pytest.param(P0, T0.clamp_min(0) + V, False, ValueError, r"outside \[0, 11\]", id="token-range"),
    pytest.param(P0[..., :4], T0.clamp_min(5), False, ValueError, r"outside \[0, 3\] \(V = pred.shape\[-1\]\)",
                 id="token-range-of-pred-V"),
    pytest.param(P0, ALL_PAD, False, ValueError, "at least one token", id="all-padding"),
    pytest.param(NAN, T0, False, ValueError, "`pred` contains NaN", id="nan"),
    pytest.param([[0.0]], T0, False, TypeError, "`pred` must be a torch.Tensor", id="list"),
])
def test_check_rejects_bad_inputs(task, pred, target, stacked, exc, match):
    with pytest.raises(exc, match=match):
        task.check(pred, target, stacked=stacked)


def test_net_config_errors(task):
    with pytest.raises(ValueError, match="`features` must be a non-empty subset"):
        task.build_net(features=["nope"])
    with pytest.raises(ValueError, match="'pad_prob' needs the task's `pad_id`"):
        task.build_net(features=["target_prob", "pad_prob"])
    with pytest.raises(ValueError, match="divisible by `heads`"):
        task.build_net(d_model=30, heads=4)
    with pytest.raises(TypeError, match="`pad_id` is a task argument"):
        task.build_net(pad_id=0)


# ---- baseline, G_R, relabel ------------------------------------------------------------------------------


def test_baseline_is_token_cross_entropy_per_batch(task):
    pred, target = task.random_batches(4, 5, torch.Generator().manual_seed(2))
    want = torch.stack([F.cross_entropy(p.reshape(-1, V), t.reshape(-1), ignore_index=PAD)
                        for p, t in zip(pred, target, strict=True)])
    torch.testing.assert_close(task.baseline(pred, target), want)


@pytest.mark.parametrize("pad_id", [None, 1])
def test_random_batches_spread_the_metrics(pad_id):
    task = S.SequenceTask(vocab_size=32, max_length=16, pad_id=pad_id)
    pred, target = task.random_batches(96, 8, torch.Generator().manual_seed(0))
    task.check(pred, target, stacked=True)
    assert pred.shape == (96, 8, 16, 32) and target.dtype == torch.long
    lengths = (target != PAD).sum(-1)
    assert int(lengths.min()) < 8 and int(lengths.max()) == 16  # random lengths, padded with -100
    for name, lo, hi in (("bleu", 0.15, 0.85), ("edit_distance", 0.15, 0.8), ("rouge_l", 0.4, 0.85)):
        values = task.metrics[name].evaluate(pred, target)
        q = torch.quantile(values, torch.tensor([0.1, 0.9], dtype=torch.float64))
        assert float(q[0]) < lo and float(q[1]) > hi, (name, q)
    if pad_id is not None:  # hypotheses end early (predict pad_id) in some sentences
        valid = target != PAD
        assert bool(((pred.argmax(-1) == pad_id) & valid).any())
    again = task.random_batches(96, 8, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], pred) and torch.equal(again[1], target)


def test_relabel_keeps_logits_and_padding(task):
    pred, target = task.random_batches(16, 4, torch.Generator().manual_seed(5))
    p2, t2 = task.relabel(pred, target, torch.Generator().manual_seed(0))
    assert p2 is pred
    assert torch.equal(t2 == PAD, target == PAD)
    task.check(p2, t2, stacked=True)
    bleu = task.metrics["bleu"].evaluate(p2, t2)
    assert float(bleu.max()) > 0.8 and float(bleu.min()) < 0.3


# ---- surrogate network -----------------------------------------------------------------------------------


def test_token_features_match_a_naive_loop():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 6, 7, generator=g)
    target = torch.randint(0, 7, (3, 6), generator=g)
    target[1, 4:] = PAD
    feats = S.token_features(logits, target, ("target_prob", "max_prob", "margin", "match", "neighbour_prob",
                                              "pad_prob"), window=2, pad_id=2)
    p = logits.softmax(-1)
    for s in range(3):
        for t in range(6):
            y = int(target[s, t])
            if y == PAD:
                assert bool((feats[s, t] == 0).all())
                continue
            others = [float(p[s, t, c]) for c in range(7) if c != y]
            row = [float(p[s, t, y]), float(p[s, t].max()), float(p[s, t, y]) - max(others),
                   float(int(p[s, t].argmax()) == y)]
            for k in (-2, -1, 1, 2):
                inside = 0 <= t + k < 6 and int(target[s, t + k]) != PAD
                row.append(float(p[s, t, int(target[s, t + k])]) if inside else 0.0)
            row.append(float(p[s, t, 2]))
            torch.testing.assert_close(feats[s, t], torch.tensor(row), rtol=1e-5, atol=1e-6)


def test_attention_block_matches_torch_multihead_attention():
    torch.manual_seed(0)
    block = S.SelfAttentionBlock(8, 2, 16)
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(block.qkv.weight)
        mha.in_proj_bias.copy_(block.qkv.bias)
        mha.out_proj.weight.copy_(block.proj.weight)
        mha.out_proj.bias.copy_(block.proj.bias)
    x = torch.randn(3, 5, 8)
    valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    h = block.norm1(x)
    ref = x + mha(h, h, h, key_padding_mask=~valid, need_weights=False)[0]
    ref = ref + block.ff(block.norm2(ref))
    torch.testing.assert_close(block(x, valid)[valid], ref[valid], rtol=1e-5, atol=1e-5)


def test_net_equals_a_naive_loop_over_batches_and_sentences(task):
    pred, target = task.random_batches(3, 4, torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    net = task.build_net(**task.default_net_config())
    got = net(pred, target)
    assert got.shape == (3,)
    want = []
    for p, t in zip(pred, target, strict=True):
        # each sentence alone, its padding cut off: padded positions must not change a sentence's loss
        per = [net.sentence_losses(p[b, : int((t[b] != PAD).sum())][None], t[b, : int((t[b] != PAD).sum())][None])
               for b in range(t.shape[0])]
        want.append(torch.cat(per).mean())
    torch.testing.assert_close(got, torch.stack(want), rtol=1e-5, atol=1e-5)


def test_net_gradcheck_and_double_backward_in_float64():
    task = S.SequenceTask(vocab_size=4, max_length=3, pad_id=0)
    pred, target = task.random_batches(2, 2, torch.Generator().manual_seed(7))
    target[0, 1, 2] = PAD
    torch.manual_seed(0)
    net = task.build_net(**{**task.default_net_config(), "d_model": 8, "heads": 2, "ff": 8, "hidden": 8}).double()
    pred = pred.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: net(x, target), (pred,))
    # second derivatives (the learner's gradient penalty backpropagates through the gradient)
    assert torch.autograd.gradgradcheck(lambda x: net(x, target), (pred,), fast_mode=True)


# ---- learning end to end ---------------------------------------------------------------------------------

QUICK = {"steps": 20, "batches_per_step": 16, "batch_size": 8, "pool_size": 128, "validation_batches": 32,
         "eval_every": 10, "progress": False, "gradient_probe": 0}


def test_learn_end_to_end_save_and_load(tmp_path):
    sur = ml.learn("bleu", task="sequence", vocab_size=V, max_length=T, seed=0, **QUICK)
    rep = sur.report
    assert rep.task == "sequence" and rep.metric == "bleu" and rep.baseline == "cross-entropy"
    assert -1 <= rep.spearman <= 1 and -1 <= rep.baseline_spearman <= 1
    assert 0 < rep.metric_seconds < rep.learn_seconds
    pred, target = sur.task.random_batches(1, 8, torch.Generator().manual_seed(9))
    x = pred[0].clone().requires_grad_(True)
    loss = sur(x, target[0])
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert not any(p.requires_grad for p in sur.parameters())
    path = tmp_path / "bleu.safetensors"
    sur.save(path)
    back = ml.load(path)
    assert isinstance(back, Surrogate) and back.task.config() == sur.task.config()
    assert back.report.spearman == rep.spearman
    torch.testing.assert_close(back(pred[0], target[0]), sur(pred[0], target[0]))


def test_learn_lower_is_better_metric_with_pad_id():
    sur = ml.learn("edit_distance", task="sequence", vocab_size=V, max_length=T, pad_id=0, seed=1, **QUICK)
    assert sur.report.metric == "edit_distance" and not sur.report.higher_is_better
    assert sur.task.pad_id == 0 and "rel_pad" in sur.net_config["features"]


# ---- size-agnostic surrogates (issue 13) -------------------------------------------------------------------

NEW_FEATURES = ("rel_target", "soft_match", "match", "rel_neighbour", "top_gap", "rel_pad")


def test_logit_features_match_a_naive_loop():
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 6, 7, generator=g)
    logits[0, 0] = 0.0  # a tied row: the arg-max is the lowest id, as the metrics decode
    target = torch.randint(0, 7, (3, 6), generator=g)
    target[1, 4:] = PAD
    feats = S.logit_features(logits, target, NEW_FEATURES, window=2, pad_id=2)
    for s in range(3):
        for t in range(6):
            y = int(target[s, t])
            if y == PAD:
                assert bool((feats[s, t] == 0).all())
                continue
            z = [float(v) for v in logits[s, t]]
            a = z.index(max(z))
            z1, z2 = max(z), sorted(z)[-2]
            other = max(v for c, v in enumerate(z) if c != y)
            row = [2.718281828 ** (z[y] - z1), 1 / (1 + 2.718281828 ** -(z[y] - other)), float(a == y)]
            for k in (-2, -1, 1, 2):
                inside = 0 <= t + k < 6 and int(target[s, t + k]) != PAD
                row.append(2.718281828 ** (z[int(target[s, t + k])] - z1) if inside else 0.0)
            row += [1 - 2.718281828 ** (z2 - z1), 2.718281828 ** (z[2] - z1)]
            torch.testing.assert_close(feats[s, t], torch.tensor(row), rtol=1e-5, atol=1e-6)


def _embed_in_vocabulary(pred: torch.Tensor, target: torch.Tensor, big: int, g: torch.Generator):
    """The same batch over ``big`` token ids: ids permuted at random, the new columns below every runner-up."""
    perm = torch.randperm(big, generator=g)[: pred.shape[-1]]
    low = pred.topk(2, dim=-1).values[..., 1:2] - 1.0 - torch.rand(*pred.shape[:-1], big, generator=g)
    wide = low.scatter(-1, perm.expand(*pred.shape[:-1], -1), pred)
    return wide, torch.where(target == PAD, target, perm[target.clamp_min(0)])


def test_default_net_and_bleu_do_not_depend_on_the_vocabulary():
    task = S.SequenceTask(vocab_size=40, max_length=12)
    pred, target = task.random_batches(2, 3, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    net = task.build_net(**task.default_net_config())
    wide, wide_target = _embed_in_vocabulary(pred, target, 32000, torch.Generator().manual_seed(1))
    assert wide.shape == (2, 3, 12, 32000)
    torch.testing.assert_close(net(wide, wide_target), net(pred, target), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(task.metrics["bleu"].evaluate(wide, wide_target),
                               task.metrics["bleu"].evaluate(pred, target))


def test_surrogate_values_and_gradients_at_nmt_size():
    task = S.SequenceTask(vocab_size=32000, max_length=16)
    torch.manual_seed(0)
    sur = Surrogate(task, task.build_net(**task.default_net_config()), task.default_net_config())
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 16, 32000, generator=g).requires_grad_(True)
    target = torch.randint(0, 32000, (2, 16), generator=g)
    target[1, 9:] = PAD
    loss = sur(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(logits.grad).all())
    # The gradient reaches the columns the net reads (targets, arg-max, runner-up) and no others.
    touched = logits.grad.abs().sum(dim=(0, 1)) > 0
    read = set(target[target != PAD].tolist()) | set(logits.argmax(-1)[target != PAD].tolist())
    assert 0 < int(touched.sum()) and set(touched.nonzero().flatten().tolist()) <= read | set(
        logits.topk(2, dim=-1).indices[..., 1][target != PAD].tolist())


def test_surrogate_accepts_any_length_up_to_1024_and_names_the_fix_above():
    task = S.SequenceTask(vocab_size=50, max_length=20)
    torch.manual_seed(0)
    sur = Surrogate(task, task.build_net(**task.default_net_config()), task.default_net_config())
    g = torch.Generator().manual_seed(0)
    for t in (40, 1024):  # learned at max_length = 20, called far longer
        logits = torch.randn(1, t, 50, generator=g, requires_grad=True)
        sur(logits, torch.randint(0, 50, (1, t), generator=g)).backward()
        assert bool(torch.isfinite(logits.grad).all())
    with pytest.raises(ValueError, match=r"T <= 1024 .* got T = 1025; score longer sequences in windows"):
        sur(torch.randn(1, 1025, 50), torch.zeros(1, 1025, dtype=torch.long))
    with pytest.raises(ValueError, match=r"`max_length` must be at most 1024 .* got 2000"):
        S.SequenceTask(vocab_size=50, max_length=2000)


def test_absolute_position_nets_name_the_surrogate_that_serves_longer_sentences():
    task = S.SequenceTask(vocab_size=50, max_length=20)
    task.build_net(**{**task.default_net_config(), "positions": "absolute"})
    task.check(torch.randn(2, 20, 50), torch.zeros(2, 20, dtype=torch.long))
    with pytest.raises(ValueError, match=r"T <= max_length = 20 .* got T = 40.*ml.pretrained\('sequence-bleu'\)"):
        task.check(torch.randn(2, 40, 50), torch.zeros(2, 40, dtype=torch.long))


def test_new_net_config_errors(task):
    with pytest.raises(ValueError, match="'rel_pad' needs the task's `pad_id`"):
        task.build_net(features=["rel_target", "rel_pad"])
    with pytest.raises(ValueError, match=r"mixes softmax features .*\['rel_target'\]; use one kind"):
        task.build_net(features=["target_prob", "rel_target"])
    with pytest.raises(ValueError, match="`positions` must be one of"):
        task.build_net(positions="learned")
    with pytest.raises(ValueError, match=r"`pred` has V = 4 token ids, but the task's `pad_id` is 7"):
        S.SequenceTask(vocab_size=12, max_length=5, pad_id=7).check(torch.randn(1, 3, 4), torch.zeros(1, 3).long())


def test_random_batches_draw_vocabularies_and_lengths_from_ranges():
    task = S.SequenceTask(vocab_size=32000, max_length=40, pad_id=5)
    pred, target = task.random_batches(40, 4, torch.Generator().manual_seed(0))
    assert pred.shape == (40, 4, 40, S.GEN_VOCAB) and task.batch_nbytes(4) == 4 * 40 * (4 * S.GEN_VOCAB + 8)
    task.check(pred, target, stacked=True)
    used = torch.where(target == PAD, 0, target).amax(dim=(1, 2))  # the largest id each batch uses
    assert int(used.min()) < S.GEN_VOCAB // 2 and int(used.max()) >= S.GEN_VOCAB * 3 // 4
    longest = (target != PAD).sum(-1).amax(-1)  # the longest sentence of each batch, padded to 40
    assert int(longest.min()) < 20 and int(longest.max()) == 40
    assert bool(((pred.argmax(-1) == 5) & (target != PAD)).any())  # pad_id kept at its id
    # Each batch as it would be over the whole vocabulary: same BLEU, and the net reads the same features.
    values = task.metrics["bleu"].evaluate(pred, target)
    assert float(values.min()) < 0.2 and float(values.max()) > 0.8


def test_bucketed_stacks_give_each_batch_its_own_value():
    task = S.SequenceTask(vocab_size=30, max_length=12)
    torch.manual_seed(0)
    net = task.build_net(**task.default_net_config())
    g = torch.Generator().manual_seed(2)
    batches = []
    for t in (5, 12, 8):
        p, y = task.random_batches(1, 3, g)
        batches.append((p[0, :, :t], y[0, :, :t].clamp_min(0)))
    pred, target = evaluation.stack_batches(batches, 3, task)
    assert pred.shape == (3, 3, 12, 30)
    want = torch.stack([net(p[None], y[None])[0] for p, y in batches])
    torch.testing.assert_close(net(pred, target), want, rtol=1e-5, atol=1e-5)


def test_files_saved_before_positions_existed_give_the_same_values():
    from safetensors.torch import load_file

    data = Path(__file__).parent / "data" / "sequence-v1"  # the shipped surrogate of dbf06ea, its inputs, values
    expected = json.loads((data / "expected.json").read_text())
    inputs = load_file(data / "inputs.safetensors")
    sur = ml.load(data / "sequence-bleu.safetensors")
    assert sur.net.positions == "absolute" and sur.net.softmax_inputs
    for i, (p, t) in enumerate(zip(inputs["pred"], inputs["target"], strict=True)):
        x = p.clone().requires_grad_(True)
        loss = sur(x, t)
        loss.backward()
        assert float(loss.detach()) == pytest.approx(expected["losses"][i], rel=1e-5)
        assert float(x.grad.norm()) == pytest.approx(expected["grad_norms"][i], rel=1e-4)


def test_compact_storage_keeps_the_default_net_and_the_matching_metrics():
    g = torch.Generator().manual_seed(8)
    task = S.SequenceTask(vocab_size=3000, max_length=9)
    pred = torch.randn(2, 3, 9, 3000, generator=g) * 2
    target = torch.randint(0, 3000, (2, 3, 9), generator=g)
    target[0, 1, 5:] = PAD
    target[1, 2, :4] = pred[1, 2, :4].argmax(-1)  # some matches, so BLEU is not 0
    target[1, 2, 4] = target[1, 2, 3]  # a repeated token
    small, small_target = task.compact(pred, target)
    assert small.shape[:-1] == pred.shape[:-1] and small.shape[-1] <= 3 * 9 + 1
    assert torch.equal(small_target == PAD, target == PAD)
    torch.manual_seed(0)
    net = task.build_net(**task.default_net_config())
    torch.testing.assert_close(net(small, small_target), net(pred, target), rtol=1e-5, atol=1e-6)
    for name in ("bleu", "edit_distance", "token_f1", "rouge_l"):
        torch.testing.assert_close(task.metrics[name].evaluate(small, small_target),
                                   task.metrics[name].evaluate(pred, target))
    tiny = torch.randn(1, 2, 3, 4, generator=g)  # every id kept: the column of the others is below them all
    t4 = torch.randint(0, 4, (1, 2, 3), generator=g)
    assert bool(torch.isfinite(task.compact(tiny, t4)[0]).all())
