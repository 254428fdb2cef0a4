"""Kaldi CompactLattice archives: real lattices read and written back byte for byte, text and
binary, and malformed archives refused with the archive, the key and the offset."""

from __future__ import annotations

import struct

import pytest

from rescorer.cli import main as rescorer_cli
from rescorer.lattice import Arc, CompactLattice, LatticeError, LatticeWeight, read_lattices, write_lattices
from rescorer.lattice.archive import archive_bytes
from rescorer.lattice.compact_lattice import ONE, ZERO, float32
from tests.conftest import shared_data


def _made_lattice() -> CompactLattice:
    w = LatticeWeight
    return CompactLattice(start=0, arcs=[
        [Arc(3, w(1.5, -20.25, (2, 1, 1)), 1), Arc(0, ONE, 2)],
        [Arc(4, w(0.5, 3.0, ()), 3)],
        [Arc(5, w(2.0, float32(1e-5), (7,)), 3)],  # costs are float32, as Kaldi keeps them
        [],
    ], finals=[ZERO, ZERO, ZERO, w(0.25, 0.0, ())])


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_a_lattice_written_and_read_back_is_the_same_lattice(tmp_path, binary, suffix):
    path = tmp_path / f"lat.ark{suffix}"
    items = [("utt-1", _made_lattice()), ("utt-2", _made_lattice())]
    write_lattices(items, path, binary)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    back = read_lattices(path)
    assert [k for k, _ in back] == ["utt-1", "utt-2"]
    assert all(a.same_as(b) for (_, a), (_, b) in zip(items, back, strict=True))


def test_the_text_form_is_kaldis():
    text = archive_bytes([("u", _made_lattice())], binary=False).decode()
    # weights One left out (an arc, a final line), 6 significant digits, tabs, an empty line at the end
    assert text == ("u \n0\t1\t3\t1.5,-20.25,2_1_1\n0\t2\t0\n1\t3\t4\t0.5,3,\n2\t3\t5\t2,1e-05,7\n"
                    "3\t0.25,0,\n\n")


def test_a_real_text_lattice_is_read_and_written_back_byte_for_byte():
    path = shared_data("kaldi-lattices/kgraph-lat.txt")
    ((key, lattice),) = read_lattices(path)
    assert (key, lattice.num_states, lattice.num_arcs, len(lattice.final_states())) == ("test", 743, 2144, 409)
    assert sum(len(a.weight.alignment) for arcs in lattice.arcs for a in arcs) > 0  # alignments kept
    assert archive_bytes([(key, lattice)], binary=False) == path.read_bytes()


def test_the_real_binary_archive_round_trips_through_text_without_changing_a_lattice(tmp_path, capsys):
    path = shared_data("kaldi-lattices/kgraph-lat.1")
    lattices = read_lattices(path)
    assert len(lattices) == 10 and all(k.startswith("CVTE201703_") for k, _ in lattices)
    assert archive_bytes(lattices, binary=True) == path.read_bytes()  # the same bytes, properties included
    # the CLI: binary -> text -> binary (gzip) -> text; the two texts are identical
    assert rescorer_cli(["lattice", "copy", str(path), str(tmp_path / "a.txt"), "--text"]) == 0
    assert rescorer_cli(["lattice", "copy", str(tmp_path / "a.txt"), str(tmp_path / "b.ark.gz")]) == 0
    assert rescorer_cli(["lattice", "copy", str(tmp_path / "b.ark.gz"), "-", "--text"]) == 0
    assert capsys.readouterr().out == (tmp_path / "a.txt").read_text()
    again = read_lattices(tmp_path / "b.ark.gz")
    for (_, a), (_, b) in zip(lattices, again, strict=True):  # text keeps 6 digits: costs within float rounding
        assert [[x.word for x in s] for s in a.arcs] == [[x.word for x in s] for s in b.arcs]
        assert all(abs(x.weight.graph_cost - y.weight.graph_cost) <= 1e-5 * max(1.0, abs(x.weight.graph_cost))
                   for s, t in zip(a.arcs, b.arcs, strict=True) for x, y in zip(s, t, strict=True))


def test_the_small_real_lattice_reads_with_its_words():
    path = shared_data("kaldi-lattices/theanolm-lattice.txt")
    words = dict(line.split() for line in shared_data("kaldi-lattices/theanolm-words.txt").read_text().splitlines())
    ((key, lattice),) = read_lattices(path)
    assert (key, lattice.num_states, lattice.num_arcs, lattice.final_states()) == ("utterance-123", 23, 37, [21, 22])
    ids = {int(i) for i in words.values()}
    assert {a.word for arcs in lattice.arcs for a in arcs} <= ids


@pytest.mark.parametrize(("content", "expected"), [
    (b"u \n0\t1\t3\t1.5,x,\n\n", r"lattice 'u' \(at offset 2\): line 1 of the lattice .*costs must be numbers"),
    (b"u \n0\t1\t3\t1.5,2\n\n", "expected GRAPH,ACOUSTIC,TIDS"),
    (b"u \n0\t1\t3\t1\t2\t3\n\n", "6 fields"),
    (b"u \n0\t-1\t3\n\n", "must be >= 0"),
    (b"u \n\n", "an empty lattice"),
    (b"u 0 1 3\n\n", "expected a newline after the key"),
    (b"\x1f\x8bnot gzip", "a corrupt gzip file"),
])
def test_a_malformed_text_archive_names_the_key_and_what_was_expected(tmp_path, content, expected):
    path = tmp_path / "bad.ark"
    path.write_bytes(content)
    with pytest.raises(LatticeError, match=expected):
        read_lattices(path)


def test_a_binary_lattice_cut_short_or_out_of_bounds_is_refused_with_the_offset(tmp_path):
    data = archive_bytes([("u", _made_lattice())], binary=True)
    for cut in (10, 60, len(data) - 3):
        (tmp_path / "cut.ark").write_bytes(data[:cut])
        with pytest.raises(LatticeError, match=r"bad.ark|cut.ark: lattice 'u' \(at offset 2\): offset \d+"):
            read_lattices(tmp_path / "cut.ark")
    with pytest.raises(LatticeError, match="the reader takes 0-3"):  # more states than allowed
        (tmp_path / "whole.ark").write_bytes(data)
        read_lattices(tmp_path / "whole.ark", max_states=3)
    header = len(b"u ") + 4 + 4 + 6 + 4 + 16 + 4 + 4 + 8 + 8  # up to the number of states
    huge = data[:header] + struct.pack("<q", 1 << 40) + data[header + 8:]
    (tmp_path / "huge.ark").write_bytes(huge)
    with pytest.raises(LatticeError, match="states; the reader takes"):
        read_lattices(tmp_path / "huge.ark")


def test_keys_kaldi_cannot_read_are_refused_before_writing(tmp_path):
    with pytest.raises(LatticeError, match="no whitespace"):
        write_lattices([("a b", _made_lattice())], tmp_path / "x.ark", binary=False)
    assert not (tmp_path / "x.ark").exists()
    with pytest.raises(LatticeError, match="no whitespace"):  # compressed output: refused before writing too
        write_lattices([("", _made_lattice())], tmp_path / "x.ark.gz", binary=True)
    assert not (tmp_path / "x.ark.gz").exists()
