"""Arrays to and from Flower's Array without np.save / np.load: the same bytes as Flower writes, the
same arrays as Flower reads, and Flower's own reading (and refusals) wherever a header is not ours."""

import io

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from fl.array_codec import array_nbytes, to_array, to_numpy
from fl.payload_format import payload_bytes
from fl.task import from_array_record, record_nbytes, to_array_record

ARRAYS = [
    np.arange(12, dtype=np.float32).reshape(3, 4) / 7,
    np.arange(-5, 5, dtype=np.int8),
    np.array(2.5),
    np.zeros((0, 3), dtype=np.float16),
    np.arange(20, dtype=np.int64)[::3],  # not contiguous
    np.ones((2, 3), dtype=">f8", order="F"),  # big-endian, Fortran order
]


@pytest.mark.parametrize("values", ARRAYS, ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_written_bytes_and_read_arrays_match_flowers(values):
    ours = to_array(values)
    flowers = Array(np.asarray(values, order="C"))
    assert ours.data == flowers.data and ours.dtype == flowers.dtype
    assert tuple(ours.shape) == tuple(flowers.shape)
    for array in (ours, flowers, Array(values)):
        got = to_numpy(array)
        assert got.dtype == values.dtype and got.shape == values.shape
        assert np.array_equal(got, values) and got.flags.writeable
    assert array_nbytes(ours) == values.nbytes


def _npy(values: np.ndarray, version: tuple[int, int] = (1, 0)) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, values, version=version)
    return buffer.getvalue()


def test_a_header_that_is_not_ours_is_read_by_flower_as_before():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    version2 = Array(
        dtype="float32", shape=(2, 3), stype="numpy.ndarray", data=_npy(values, (2, 0))
    )
    assert np.array_equal(to_numpy(version2), values)
    # fields that disagree with the header: the header decides, exactly as in array.numpy()
    lying = Array(dtype="float64", shape=(3,), stype="numpy.ndarray", data=_npy(values))
    assert np.array_equal(to_numpy(lying), lying.numpy())


def test_truncated_data_is_refused_as_flower_refuses_it():
    values = np.arange(6, dtype=np.float32)
    cut = Array(dtype="float32", shape=(6,), stype="numpy.ndarray", data=_npy(values)[:-4])
    with pytest.raises(ValueError):
        cut.numpy()
    with pytest.raises(ValueError):
        to_numpy(cut)


def test_object_arrays_are_never_sent():
    with pytest.raises(TypeError, match="object"):
        to_array(np.array([{"a": 1}], dtype=object))


def test_record_size_is_read_from_the_fields_and_equals_the_decoded_payloads():
    payload = {"w": ARRAYS[0], "q": ARRAYS[1], "e": ARRAYS[3]}
    record = to_array_record(payload)
    assert isinstance(record, ArrayRecord)
    assert (
        record_nbytes(record) == payload_bytes(from_array_record(record)) == payload_bytes(payload)
    )
