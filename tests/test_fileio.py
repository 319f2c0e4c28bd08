import pytest

from edge_fer.errors import OutputExistsError
from edge_fer.fileio import atomic_output


def test_failure_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "artifact.bin"
    target.write_bytes(b"good")
    with pytest.raises(RuntimeError):
        with atomic_output(target, force=True) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact.bin"]


def test_success_replaces_and_existing_needs_force(tmp_path):
    target = tmp_path / "sub" / "artifact.bin"
    with atomic_output(target) as tmp:
        tmp.write_bytes(b"v1")
    assert target.read_bytes() == b"v1"
    with pytest.raises(OutputExistsError):
        with atomic_output(target):
            pass
    with atomic_output(target, force=True) as tmp:
        tmp.write_bytes(b"v2")
    assert target.read_bytes() == b"v2"
