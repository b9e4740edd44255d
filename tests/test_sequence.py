"""The sequence task family: metrics against independent references, checks, surrogate network, G_R, learning."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sacrebleu.metrics import BLEU, CHRF

import metricloss as ml
from metricloss import Surrogate
from metricloss.metrics import sequence as M
from metricloss.metrics.base import Metric
from metricloss.tasks import get_task
from metricloss.tasks import sequence as S
from profiles import examples

V, T = 12, 10
PAD = -100


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The tensors here are tiny: with more than one thread on a busy machine, synchronisation dominates.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
    pytest.param(torch.randn(4, T, V + 1), T0, False, ValueError, r"V = vocab_size = 12", id="wrong-V"),
    pytest.param(torch.randn(4, T + 1, V), torch.zeros(4, T + 1, dtype=torch.long), False, ValueError,
                 r"T <= max_length = 10", id="too-long"),
    pytest.param(torch.randn(0, T, V), torch.zeros(0, T, dtype=torch.long), False, ValueError, "empty batch",
                 id="empty"),
    pytest.param(P0, T0[:, :5], False, ValueError, r"`target` must have shape \(4, 10\)", id="target-shape"),
    pytest.param(P0, T0.float(), False, TypeError, "`target` must be an integer tensor", id="target-float"),
    pytest.param(P0.long(), T0, False, TypeError, "`pred` must be a floating-point tensor", id="pred-int"),
    pytest.param(P0, T0.clamp_min(0) + V, False, ValueError, r"outside \[0, 11\]", id="token-range"),
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
    assert sur.task.pad_id == 0 and "pad_prob" in sur.net_config["features"]
