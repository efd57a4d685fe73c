"""FAISS L1 retrieval: ids, exclusion, incremental adds, persistence, recall and errors."""

from pathlib import Path

import faiss
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ranking.errors import ConfigError, DataError
from ranking.retrieval.faiss_index import FaissIndex
from ranking.retrieval.ground_truth import exact_topk, recall_at_k

D = 32
FACTORIES = ["Flat", "HNSW32", "IVF16,PQ16x4"]
CONF = Path(__file__).resolve().parents[2] / "conf" / "index"


def clustered(n: int, seed: int, d: int = D) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((20, d))
    x = centres[rng.integers(0, 20, n)] + 0.6 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    """Small indexes: OpenMP threads only add overhead (and contention on shared CI machines)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return clustered(2000, 0)


@pytest.fixture(scope="module")
def item_ids() -> np.ndarray:
    return np.arange(2000, dtype=np.int64) * 7 + 3  # sparse external ids


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(16, 1)


def build_fresh(factory: str, items: np.ndarray, ids: np.ndarray) -> FaissIndex:
    return FaissIndex(D, factory, nprobe=16, ef_search=64).build(items, ids)


@pytest.fixture(scope="module")
def built(items, item_ids, tmp_path_factory):
    """``built(factory)``: a private copy of one index over ``items`` (trained once per module)."""
    paths: dict[str, Path] = {}

    def get(factory: str) -> FaissIndex:
        if factory not in paths:
            paths[factory] = tmp_path_factory.mktemp("idx") / "items.faiss"
            build_fresh(factory, items, item_ids).save(paths[factory])
        return FaissIndex.load(paths[factory])

    return get


# ---------------------------------------------------------------------- ids and persistence


@pytest.mark.parametrize("factory", FACTORIES)
def test_search_returns_external_ids_best_first(built, factory, items, item_ids):
    index = built(factory)
    scores, ids = index.search(items[:10], 5)
    assert scores.shape == ids.shape == (10, 5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert np.isin(ids, item_ids).all()
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    if factory != "IVF16,PQ16x4":  # PQ scores are approximate
        np.testing.assert_array_equal(ids[:, 0], item_ids[:10])


@pytest.mark.parametrize("factory", FACTORIES)
def test_save_load_round_trip_gives_identical_results(factory, items, item_ids, queries, tmp_path):
    index = build_fresh(factory, items, item_ids)
    before = index.search(queries, 20)
    path = tmp_path / "sub" / "items.faiss"
    index.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["items.faiss", "items.faiss.json"]
    back = FaissIndex.load(path)
    assert (back.factory, back.dim, back.normalise, back.ntotal) == (factory, D, True, 2000)
    assert (back.ef_search, back.nprobe) == (64, 16)
    after = back.search(queries, 20)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(back.ids(), np.sort(item_ids))
    # The loaded index keeps growing and refuses ids it already holds.
    back.add(queries[:1], [10**9])
    assert back.search(queries[:1], 1)[1][0, 0] == 10**9
    with pytest.raises(DataError, match="already in the index"):
        back.add(items[:1], item_ids[:1])


# ---------------------------------------------------------------------- exclusion


@pytest.mark.parametrize("factory", FACTORIES)
def test_global_exclusion_never_returns_excluded_ids(built, factory, items, item_ids, queries):
    index = built(factory)
    _, plain = index.search(queries, 10)
    excluded = np.concatenate([plain[:, :3].ravel(), item_ids[::5]])  # top hits + 20% of items
    scores, ids = index.search(queries, 10, exclude=excluded)
    assert not np.isin(ids, excluded).any()
    assert (ids >= 0).all() and np.isfinite(scores).all()  # still k allowed results
    # A plain list of ids is one global set as well.
    _, ids2 = index.search(queries, 10, exclude=excluded.tolist())
    assert not np.isin(ids2, excluded).any()


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("extra", [0, 600], ids=["short-lists", "long-lists"])
def test_per_query_exclusion_never_returns_excluded_ids(
    built, factory, extra, items, item_ids, queries
):
    index = built(factory)
    _, plain = index.search(queries, 10)
    rng = np.random.default_rng(3)
    per_query = [
        np.concatenate([plain[i, : 1 + i % 4], rng.choice(item_ids, extra, replace=False)])
        for i in range(len(queries))
    ]
    _, ids = index.search(queries, 10, exclude=per_query)
    assert (ids >= 0).all()
    for i, ex in enumerate(per_query):
        assert not np.isin(ids[i], ex).any()
        assert ids[i, 0] != plain[i, 0]  # the true nearest neighbour was excluded
    # Only each query's own list applies: another query's best hit may come back.
    _, ids_self = index.search(queries[:2], 10, exclude=[plain[1, :1], np.array([], np.int64)])
    assert ids_self[1, 0] == plain[1, 0]


@pytest.mark.parametrize("factory", FACTORIES)
def test_excluding_an_items_own_id_when_querying_with_its_vector(built, factory, items, item_ids):
    index = built(factory)
    padded = np.full((8, 3), -1, np.int64)  # [B, m] form, padded with negatives
    padded[:, 0] = item_ids[:8]
    _, ids = index.search(items[:8], 10, exclude=padded)
    assert not (ids == item_ids[:8, None]).any()
    _, ids = index.search(items[:8], 10, exclude=item_ids[:8])
    assert not np.isin(ids, item_ids[:8]).any()


def test_exclusion_pads_with_minus_one_only_when_fewer_than_k_remain():
    x = clustered(10, 5)
    index = FaissIndex(D, "Flat").build(x, np.arange(100, 110))
    scores, ids = index.search(x[:2], 5, exclude=np.arange(100, 107))
    assert (ids[:, :3] >= 107).all() and (ids[:, 3:] == -1).all()
    assert np.isfinite(scores[:, :3]).all() and np.isneginf(scores[:, 3:]).all()


def test_exclusion_falls_back_to_overfetch_for_indexes_without_selectors(items, item_ids, queries):
    index = build_fresh("PQ8x4", items, item_ids)  # IndexPQ refuses ID selectors
    _, plain = index.search(queries, 10)
    excluded = plain[:, :5].ravel()
    _, ids = index.search(queries, 10, exclude=excluded)
    assert not np.isin(ids, excluded).any() and (ids >= 0).all()
    per_query = [np.append(r[:5], item_ids[:300]) for r in plain]
    _, ids = index.search(queries, 10, exclude=per_query)
    assert all(not np.isin(row, ex).any() for row, ex in zip(ids, per_query, strict=True))
    assert (ids >= 0).all()


# ---------------------------------------------------------------------- incremental adds


@pytest.mark.parametrize("factory", FACTORIES)
def test_items_added_after_the_build_are_retrievable(built, factory, items, item_ids, queries):
    index = built(factory)
    new_ids = index.add(queries[:5] * 3.0, np.arange(50_000, 50_005))  # normalised on the way in
    assert index.ntotal == 2005
    np.testing.assert_array_equal(new_ids, np.arange(50_000, 50_005))
    _, ids = index.search(queries[:5], 10)
    np.testing.assert_array_equal(ids[:, 0], new_ids)
    # Default ids continue after the largest one.
    assert index.add(queries[5:6]).tolist() == [50_005]


# ---------------------------------------------------------------------- recall and ground truth


def test_hnsw_recall_at_10_against_exact_search():
    rng = np.random.default_rng(7)
    xb = rng.standard_normal((5000, D)).astype(np.float32)
    xq = rng.standard_normal((100, D)).astype(np.float32)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq /= np.linalg.norm(xq, axis=1, keepdims=True)
    index = FaissIndex(D, "HNSW32", ef_search=64, ef_construction=100).build(xb)
    _, found = index.search(xq, 10)
    _, truth = exact_topk(xb, xq, 10)
    assert recall_at_k(found, truth) >= 0.9


def test_exact_topk_and_recall_at_k():
    xb = np.eye(4, dtype=np.float32)
    q = np.array([[0.9, 0.1, 0.0, 0.0], [0.0, 0.0, 0.2, 1.0]], np.float32)
    scores, pos = exact_topk(xb, q, 2)
    np.testing.assert_array_equal(pos, [[0, 1], [3, 2]])
    np.testing.assert_allclose(scores, [[0.9, 0.1], [1.0, 0.2]], rtol=1e-6)
    _, ids = exact_topk(xb, q, 6, ids=[10, 11, 12, 13])
    assert ids[0, :2].tolist() == [10, 11] and (ids[:, 4:] == -1).all()
    assert recall_at_k([[0, 1], [3, 2]], pos) == 1.0
    assert recall_at_k([[0, 7], [7, 7]], pos) == 0.25
    assert recall_at_k([[1, 0, 5]], [[0, 1]]) == 1.0


# ---------------------------------------------------------------------- errors


def test_bad_configuration_raises_config_error():
    with pytest.raises(ConfigError, match="NoSuchIndex"):
        FaissIndex(D, "NoSuchIndex")
    with pytest.raises(ConfigError, match="PQ5"):
        FaissIndex(D, "IVF8,PQ5")  # 5 does not divide 32
    with pytest.raises(ConfigError, match="dim"):
        FaissIndex(0, "Flat")
    with pytest.raises(ConfigError, match="ef_search"):
        FaissIndex(D, "HNSW32", ef_search=0)
    index = FaissIndex(D, "Flat").build(clustered(50, 0))
    with pytest.raises(ConfigError, match="k must be"):
        index.search(clustered(1, 1), 0)


def test_bad_vectors_and_ids_raise_data_error():
    x = clustered(50, 0)
    index = FaissIndex(D, "Flat")
    with pytest.raises(DataError, match="dimension 16"):
        index.add(x[:, :16])
    nan = x.copy()
    nan[3, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        index.add(nan)
    with pytest.raises(DataError, match="3 ids for 50 vectors"):
        index.add(x, [1, 2, 3])
    with pytest.raises(DataError, match="duplicates"):
        index.add(x[:2], [4, 4])
    with pytest.raises(DataError, match="non-negative"):
        index.add(x[:2], [-1, 4])
    with pytest.raises(DataError, match="zero"):
        index.add(np.zeros((1, D)))
    assert index.ntotal == 0  # nothing was half-added
    with pytest.raises(DataError, match="empty"):
        index.search(x[:1], 5)
    index.add(x)
    with pytest.raises(DataError, match="dimension 8"):
        index.search(np.ones((2, 8)), 5)
    with pytest.raises(DataError, match="NaN"):
        index.search(nan[3], 5)
    with pytest.raises(DataError, match="2 per-query lists for 3 queries"):
        index.search(x[:3], 5, exclude=[np.array([1]), np.array([2])])


def test_untrained_index_raises_data_error():
    x = clustered(300, 0)
    index = FaissIndex(D, "IVF16,Flat")
    with pytest.raises(DataError, match="not trained"):
        index.search(x[:1], 5)
    with pytest.raises(DataError, match="not trained"):
        index.add(x)
    with pytest.raises(DataError, match="training"):
        index.train(x[:8])  # fewer points than lists
    index.train(x)
    index.train(x)  # already trained: a no-op
    with pytest.raises(DataError, match="empty"):
        index.search(x[:1], 5)


def test_loading_missing_or_corrupt_files_names_the_path(tmp_path, items):
    missing = tmp_path / "nope.faiss"
    with pytest.raises(DataError, match="nope.faiss"):
        FaissIndex.load(missing)

    path = tmp_path / "idx.faiss"
    FaissIndex(D, "HNSW32").build(items).save(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])  # truncated
    with pytest.raises(DataError, match="idx.faiss"):
        FaissIndex.load(path)
    path.write_bytes(b"not a faiss index" + bytes(len(blob) - 17))  # right size, garbage
    with pytest.raises(DataError, match="not a readable FAISS index"):
        FaissIndex.load(path)
    path.write_bytes(blob)
    FaissIndex.metadata_path(path).write_text("{broken")
    with pytest.raises(DataError, match=r"idx\.faiss\.json"):
        FaissIndex.load(path)
    FaissIndex.metadata_path(path).unlink()
    with pytest.raises(DataError, match=r"idx\.faiss\.json"):
        FaissIndex.load(path)


def test_failed_save_leaves_no_partial_file(tmp_path, items, monkeypatch):
    index = FaissIndex(D, "Flat").build(items)
    path = tmp_path / "idx.faiss"
    index.save(path)
    before = path.read_bytes()
    index.add(clustered(5, 9))

    def broken_write(idx, fname):
        Path(fname).write_bytes(b"partial")
        raise RuntimeError("Error in write_index: Error: 'disk full' failed")

    monkeypatch.setattr(faiss, "write_index", broken_write)
    with pytest.raises(DataError, match="disk full"):
        index.save(path)
    with pytest.raises(DataError):
        index.save(tmp_path / "fresh.faiss")
    # The old index is untouched and loadable; nothing else was left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx.faiss", "idx.faiss.json"]
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert FaissIndex.load(path).ntotal == 2000


# ---------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    ("name", "factory"), [("flat", "Flat"), ("hnsw", "HNSW32"), ("ivfpq", "IVF1024,PQ16")]
)
def test_hydra_configs_instantiate_with_caller_supplied_dim(name, factory):
    index = instantiate(OmegaConf.load(CONF / f"{name}.yaml"), dim=64)
    assert isinstance(index, FaissIndex)
    assert (index.factory, index.dim, index.normalise) == (factory, 64, True)
