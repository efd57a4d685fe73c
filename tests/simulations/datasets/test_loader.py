"""The cached dataset loader: reuse, invalidation, interrupted writes and config errors."""

import signal
import subprocess
import sys

import numpy as np
import pytest

from ranking.errors import ConfigError
from simulations.datasets.loader import load

TINY = {
    "_target_": "simulations.datasets.synthetic.synthetic_dataset",
    "n_items": 60,
    "n_users": 30,
    "seed": 1,
}


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    first = load(TINY, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1

    import simulations.datasets.synthetic as synthetic

    def must_not_generate(**kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(synthetic, "synthetic_dataset", must_not_generate)
    second = load(TINY, cache_dir=tmp_path)
    np.testing.assert_array_equal(first.interactions.item, second.interactions.item)


def test_changed_setting_or_filter_makes_a_new_entry(tmp_path):
    load(TINY, cache_dir=tmp_path)
    load({**TINY, "seed": 2}, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_changed_source_file_invalidates_the_entry(tmp_path):
    data = tmp_path / "pairs.txt"
    data.write_text("1 10\n1 11\n2 10\n")
    cfg = {"_target_": "simulations.datasets.pairs.read_user_item_pairs", "path": str(data)}
    cache = tmp_path / "cache"
    assert len(load(cfg, cache_dir=cache).interactions) == 3
    data.write_text("1 10\n1 11\n2 10\n2 12\n")
    assert len(load(cfg, cache_dir=cache).interactions) == 4
    assert len(list(cache.glob("*.npz"))) == 2


def test_unknown_reader_and_bad_settings_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot be imported"):
        load({"_target_": "simulations.datasets.nope.read"}, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="_target_"):
        load({"n_items": 3}, cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="unknown dataset filter"):
        load(TINY, cache_dir=tmp_path, filters={"min_ratings": 4})
    assert list(tmp_path.glob("*.npz")) == []


KILLED_WHILE_CACHING = """
import os, signal, sys
import numpy as np
from simulations.datasets.loader import load

def half_written_then_killed(fh, **arrays):
    fh.write(b"PK half an archive")
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)

np.savez = half_written_then_killed  # what ranking.storage.save_dataset writes the cache with
load({config!r}, cache_dir=sys.argv[1])
"""


def test_a_writer_killed_while_caching_leaves_no_entry_and_its_temporary_is_removed_on_next_load(
    tmp_path,
):
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WHILE_CACHING.format(config=TINY), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith("."), leftovers
    assert leftovers[0].endswith(".tmp") and ".npz." in leftovers[0], leftovers  # no cache entry

    dataset = load(TINY, cache_dir=tmp_path)
    assert len(dataset.interactions) > 0
    cached = list(tmp_path.glob("*.npz"))
    assert [p.name for p in tmp_path.iterdir()] == [cached[0].name]
