"""metricloss.integrations.huggingface: ``compute_loss`` as ``transformers.Trainer``'s ``compute_loss_func`` on a
tiny randomly initialised BERT classifier built from a config (nothing downloaded): it trains as the model's own
loss does, records the training batches (not the evaluation ones), and carries ``ml.combine``. Skipped without the
``huggingface`` extra."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import metricloss as ml

transformers = pytest.importorskip("transformers", reason="needs the optional `huggingface` extra: "
                                   "pip install 'metricloss[huggingface]'")
pytest.importorskip("accelerate", reason="transformers.Trainer needs accelerate: pip install 'metricloss[huggingface]'")

from metricloss.integrations.huggingface import compute_loss  # noqa: E402

N, T, C, BATCH = 64, 6, 3, 8


class Rows(torch.utils.data.Dataset):
    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(1, 50, (N, T), generator=g)
        self.labels = torch.randint(0, C, (N,), generator=g)

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(T, dtype=torch.long), "labels": self.labels[i]}


def _model():
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=C,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def _train(tmp_path, fn=None, steps: int = N // BATCH):
    args = transformers.TrainingArguments(output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=BATCH,
                                          per_device_eval_batch_size=BATCH, learning_rate=1e-2, report_to=[],
                                          use_cpu=True, save_strategy="no", logging_strategy="no",
                                          disable_tqdm=True, seed=0, dataloader_num_workers=0)
    model = _model()
    trainer = transformers.Trainer(model=model, args=args, train_dataset=Rows(), eval_dataset=Rows(),
                                   compute_loss_func=fn)
    trainer.train()
    return model, trainer


def test_compute_loss_trains_as_the_models_own_loss_and_records_the_training_batches(tmp_path):
    own, _ = _train(tmp_path / "own")  # BertForSequenceClassification's cross-entropy on its labels
    recorder = ml.OutputRecorder(max_bytes=2**20)
    ours, trainer = _train(tmp_path / "ours", compute_loss(F.cross_entropy, recorder=recorder))
    for a, b in zip(own.state_dict().values(), ours.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert len(recorder) == N // BATCH
    assert all(p.shape == (BATCH, C) and t.shape == (BATCH,) and not p.requires_grad for p, t in recorder)
    # every training sample recorded once (one epoch), with its label
    assert sorted(torch.cat([t for _, t in recorder]).tolist()) == sorted(Rows().labels.tolist())
    trainer.evaluate()  # runs compute_loss_func under no_grad: not recorded
    assert len(recorder) == N // BATCH


@pytest.mark.filterwarnings("ignore::metricloss.WeakSurrogateWarning")  # 8 tiny batches: a tie is expected
def test_a_recorded_run_learns_a_surrogate_that_trains_with_combine(tmp_path):
    recorder = ml.OutputRecorder(max_bytes=2**20)
    _train(tmp_path / "base", compute_loss(F.cross_entropy, recorder=recorder))
    sur = ml.learn("accuracy", outputs=recorder, batch_size=BATCH, steps=3, batches_per_step=8, pool_size=16,
                   validation_batches=8, gradient_probe=0, seed=0, progress=False)
    assert sur.task.config() == {"num_classes": C}  # read from the recorded logits
    loss_fn = ml.combine(F.cross_entropy, sur, gate=None)
    _train(tmp_path / "combined", compute_loss(loss_fn))
    assert loss_fn.step == N // BATCH and loss_fn.weight > 0


def test_compute_loss_names_what_it_needs():
    fn = compute_loss(F.cross_entropy)
    with pytest.raises(TypeError, match=r"`logits`.*key=.*get="):
        fn({"scores": torch.zeros(2, 3)}, torch.zeros(2).long())
    with pytest.raises(TypeError, match="`loss` must be a callable"):
        compute_loss("cross_entropy")
    with pytest.raises(TypeError, match=r"`recorder` must be a metricloss\.OutputRecorder"):
        compute_loss(F.cross_entropy, recorder=[])
    # a getter, e.g. a causal language model's shifted labels
    recorder = ml.OutputRecorder(max_bytes=2**20)
    shifted = compute_loss(F.cross_entropy, recorder=recorder, record_eval=True,
                           get=lambda out, labels: (out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten()))
    out = transformers.modeling_outputs.CausalLMOutput(logits=torch.randn(2, 5, 7))
    labels = torch.randint(0, 7, (2, 5))
    expected = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())
    assert torch.equal(shifted(out, labels), expected) and len(recorder) == 1
