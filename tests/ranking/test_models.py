"""The sequence models: shapes, padding, causality, content vectors, and learning a known rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import rule_log

from ranking.data.sequences import pad_left
from ranking.data.splits import Split, leave_one_out
from ranking.errors import ConfigError
from ranking.evaluation import evaluate
from ranking.models import MODELS, GRU4Rec, LongShort, SASRec, build_model
from ranking.models.base import attention_mask, run_left_padded_rnn
from ranking.recommender import SequenceRecommender

KINDS = ["sasrec", "gru", "lstm", "longshort"]
SMALL = {
    "sasrec": {"hidden": 16, "n_blocks": 2, "n_heads": 2, "max_len": 12},
    "gru": {"hidden": 16},
    "lstm": {"hidden": 16},
    "longshort": {"hidden": 16, "short_len": 3, "max_len": 12},
}


def small_model(
    kind: str, n_items: int = 20, content: torch.Tensor | None = None, **overrides
) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(kind, n_items, content=content, **{**SMALL[kind], **overrides})
    return model.eval()


def batch(rows: list[list[int]], width: int) -> torch.Tensor:
    return torch.from_numpy(pad_left([np.array(r) for r in rows], width))


# ---- shapes and padding ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_forward_shapes_and_zero_padding(kind: str) -> None:
    model = small_model(kind)
    x = batch([[1, 2, 3], [4, 5, 6, 7, 8, 9], []], width=8)
    hidden = model(x)
    assert hidden.shape == (3, 8, 16)
    assert torch.all(hidden[x == 0] == 0)
    assert torch.isfinite(hidden).all()
    assert model.logits(hidden[:, -1]).shape == (3, 20)
    assert model.item_table().shape == (21, 16)
    assert torch.all(model.item_table()[0] == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_output_does_not_depend_on_padding(kind: str) -> None:
    model = small_model(kind)
    rows = [[1, 2, 3], [7, 5, 9, 11, 2]]
    short = model(batch(rows, width=6))[:, -1]
    long = model(batch(rows, width=12))[:, -1]
    torch.testing.assert_close(short, long, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_causality_future_inputs_do_not_change_earlier_outputs(kind: str) -> None:
    model = small_model(kind)
    x = batch([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8]], width=10)
    changed = x.clone()
    changed[:, 7] = torch.tensor([13, 17])  # a real item in both rows
    before, after = model(x), model(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=0)
    assert not torch.allclose(before[:, 7], after[:, 7])


def test_attention_mask_is_causal_windowed_and_skips_padding() -> None:
    x = torch.tensor([[0, 0, 5, 6, 7]])
    mask = attention_mask(x, window=2)[0, 0]
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [0, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def test_left_padded_rnn_matches_unpadded_runs() -> None:
    torch.manual_seed(0)
    rnn = torch.nn.GRU(4, 5, batch_first=True)
    seqs = [torch.randn(3, 4), torch.randn(6, 4), torch.randn(1, 4)]
    width = 6
    x = torch.zeros(3, width, 4)
    for b, s in enumerate(seqs):
        x[b, width - len(s) :] = s
    out = run_left_padded_rnn(rnn, x, torch.tensor([len(s) for s in seqs]))
    for b, s in enumerate(seqs):
        alone, _ = rnn(s[None])
        torch.testing.assert_close(out[b, width - len(s) :], alone[0])
        assert torch.all(out[b, : width - len(s)] == 0)


# ---- content vectors ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_content_vectors_change_item_embeddings(kind: str) -> None:
    content = torch.randn(20, 7, generator=torch.Generator().manual_seed(1))
    plain = small_model(kind)
    with_content = small_model(kind, content=content)
    table = with_content.item_table()
    assert not torch.allclose(plain.item_table()[1:], table[1:])
    assert torch.all(table[0] == 0)  # padding stays zero
    # Same ID weights, so the difference is exactly the projected content.
    assert torch.equal(plain.item_emb.ids.weight, with_content.item_emb.ids.weight)
    projected = with_content.item_emb.content_proj(content)
    torch.testing.assert_close(table[1:] - plain.item_table()[1:], projected)
    # Both input and output sides see it, the content matrix is frozen and not in the state dict.
    x = batch([[1, 2, 3]], width=4)
    assert not torch.allclose(plain(x), with_content(x))
    assert not any("content" in k and "proj" not in k for k in with_content.state_dict())
    with_content.logits(with_content(x)[:, -1]).sum().backward()
    assert with_content.item_emb.content.grad is None
    assert with_content.item_emb.content_proj.weight.grad is not None


@pytest.mark.parametrize("kind", KINDS)
def test_a_low_rank_residual_adds_u_times_v_to_every_item_but_padding(kind: str) -> None:
    torch.manual_seed(0)
    plain = small_model(kind)
    torch.manual_seed(0)
    model = small_model(kind, item_residual_rank=3)
    emb = model.item_emb
    assert emb.residual_rows is not None and emb.residual_basis is not None
    torch.testing.assert_close(model.item_table(), emb.ids.weight)  # U starts at 0
    with torch.no_grad():
        emb.residual_rows.weight.normal_()  # row 0 too: padding must ignore it
    table = model.item_table()
    expected = emb.residual_rows.weight[1:] @ emb.residual_basis.weight.T
    torch.testing.assert_close(table[1:] - emb.ids.weight[1:], expected)
    torch.testing.assert_close(table[0], emb.ids.weight[0])
    assert emb.residual_rows.weight.shape == (21, 3) and emb.residual_basis.weight.shape[1] == 3
    x = batch([[1, 2, 3]], width=4)
    model.logits(model(x)[:, -1]).sum().backward()
    assert emb.residual_rows.weight.grad is not None and emb.residual_basis.weight.grad is not None
    assert not torch.allclose(plain(x), model(x))
    with pytest.raises(ConfigError, match="item_residual_rank"):
        small_model(kind, item_residual_rank=-1)


def test_content_must_cover_the_catalog() -> None:
    with pytest.raises(ConfigError, match="content"):
        build_model("sasrec", 20, content=torch.zeros(19, 3))


# ---- factory -----------------------------------------------------------------------------------


def test_build_model_kinds_and_errors() -> None:
    assert isinstance(build_model("sasrec", 5), SASRec)
    assert isinstance(build_model("longshort", 5, session_encoder="attention"), LongShort)
    lstm = build_model("lstm", 5)
    assert isinstance(lstm, GRU4Rec) and lstm.cell == "lstm"
    assert set(KINDS) <= set(MODELS)
    with pytest.raises(ConfigError, match="unknown sequence model"):
        build_model("bert4rec", 5)
    with pytest.raises(ConfigError, match="n_blocks"):
        build_model("gru4rec", 5, n_blocks=2)
    with pytest.raises(ConfigError, match="divisible"):
        build_model("sasrec", 5, hidden=10, n_heads=3)


# ---- learning ----------------------------------------------------------------------------------


LEARN = {
    "sasrec": {"kind": "sasrec", "model": {"hidden": 32}},
    "gru": {"kind": "gru4rec", "model": {"hidden": 32, "cell": "gru"}},
    "lstm": {"kind": "gru4rec", "model": {"hidden": 32, "cell": "lstm"}},
    "longshort": {"kind": "longshort", "model": {"hidden": 32, "short_len": 3}},
    "longshort-attention": {
        "kind": "longshort",
        "model": {"hidden": 32, "short_len": 3, "session_encoder": "attention"},
    },
}


@pytest.mark.parametrize("name", list(LEARN))
def test_every_model_learns_the_next_item_rule_for_unseen_users(name: str) -> None:
    n_items, n_users, n_train_users = 30, 240, 180
    split = leave_one_out(rule_log(n_items, n_users))
    train_users = split.train.user < n_train_users
    fit_split = Split(
        kind=split.kind,
        train=split.train.take(train_users),
        valid=split.valid.take(split.valid.user < n_train_users),
        test=split.test.take(split.test.user < n_train_users),
    )
    held_out = Split(
        kind=split.kind,
        train=split.train,
        valid=split.valid.take(split.valid.user >= n_train_users),
        test=split.test.take(split.test.user >= n_train_users),
    )
    spec = LEARN[name]
    rec = SequenceRecommender(
        spec["kind"],
        model=spec["model"],
        train={
            "epochs": 40,
            "batch_size": 32,
            "lr": 3e-3,
            "max_len": 16,
            "patience": 3,
            "progress": False,
        },
    )
    rec.fit(fit_split.train, validation=fit_split)
    metrics = evaluate(rec, held_out, stage="test", ks=(10,))
    assert metrics["n_users"] == n_users - n_train_users
    assert metrics["ndcg@10"] > 0.9, (name, metrics, rec.history)
    # Not a tie artefact (ties favour the target): scores are spread and, among the items not
    # yet seen (the candidates of filter_seen=True), the rule's next item is the top-1.
    seqs = held_out.history("test").sequences()
    users = np.unique(held_out.test.user)
    histories = [seqs[u] for u in users]
    scores = rec.score(histories, users)
    expected = np.array([(h[-1] + 1) % n_items for h in histories])
    masked = scores.copy()
    for row, h in enumerate(histories):
        masked[row, h] = -np.inf
    top = np.argsort(-masked, axis=1)
    assert np.mean(top[:, 0] == expected) > 0.9
    assert np.all(scores.std(axis=1) > 1e-3)
