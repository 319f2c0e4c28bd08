"""One vocabulary of flags (edge_fer/cli/args.py): shared groups, choices, old spellings that
still work with a deprecation line, and the commands that use them."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_fer.cli.args import Parser, add_backend_arguments, add_data_arguments, flatten_counts
from edge_fer.cli.main import main
from edge_fer.data.spec import DataSpec


def _parser(**data) -> Parser:
    parser = Parser(prog="tool")
    add_data_arguments(parser, **data)
    add_backend_arguments(parser)
    return parser


def test_old_spellings_still_parse_and_say_what_replaces_them(capsys):
    args = _parser(old_prefix="eval-").parse_args(["--eval-dataset", "dfew", "--eval-root", "d", "--eval-fold", "2"])
    assert (args.dataset, args.root, args.fold) == ("dfew", Path("d"), 2)
    err = capsys.readouterr().err
    assert "--eval-dataset is deprecated" in err and "use --dataset" in err and "use --fold" in err
    assert DataSpec.from_args(args) == DataSpec("dfew", Path("d"), 2, "test")


def test_new_spellings_are_silent_and_backend_has_choices(capsys):
    args = _parser().parse_args(["--dataset", "casme2", "--root", "r", "--backend", "onnxruntime", "--threads", "2"])
    assert (args.dataset, args.backend, args.threads) == ("casme2", "onnxruntime", 2)
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["--backend", "openvnio"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "invalid choice" in err


def test_repeated_counts_and_the_old_comma_list():
    parser = Parser(prog="tool")
    add_backend_arguments(parser, several=True)
    args = parser.parse_args(["--threads", "1", "--threads", "2,4", "--backend", "openvino", "--backend", "torch"])
    assert flatten_counts(args.threads) == [1, 2, 4] and args.backend == ["openvino", "torch"]
    assert flatten_counts(None) == []


def test_a_dataset_without_its_folder_is_a_one_line_error(capsys):
    from edge_fer.errors import DatasetError

    args = _parser().parse_args(["--dataset", "dfew"])
    with pytest.raises(DatasetError, match="needs --root"):
        DataSpec.from_args(args)
    assert DataSpec.from_args(_parser().parse_args([])) is None


def test_bench_reads_the_old_eval_dataset_spelling(tmp_path, capsys):
    """edge-fer bench --eval-dataset (the spelling before --dataset) reaches the same check."""
    missing = tmp_path / "nowhere"
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"")
    code = main(["bench", "--artifacts", str(artifact), "--eval-dataset", "dfew", "--root", str(missing),
                 "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0
    assert "--eval-dataset is deprecated" in err and f"--root {missing} is not a folder" in err
