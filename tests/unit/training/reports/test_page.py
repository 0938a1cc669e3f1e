from pathlib import Path

import pytest

from training.reports.page import read_section, write_section


def test_sections_are_replaced_independently(tmp_path: Path) -> None:
    page = tmp_path / "RESULTS.md"
    write_section("encoder", "| a |\n|---|\n| 1 |", page)
    write_section("seqrec", "seq v1", page)
    text = page.read_text()
    # seqrec is ordered before encoder even though it was written second
    assert text.index("BEGIN seqrec") < text.index("BEGIN encoder")
    write_section("seqrec", "seq v2", page)
    assert read_section("seqrec", page) == "seq v2"
    assert read_section("encoder", page) == "| a |\n|---|\n| 1 |"
    assert page.read_text().count("BEGIN seqrec") == 1


def test_unknown_section_appends_and_bad_name_refused(tmp_path: Path) -> None:
    page = tmp_path / "RESULTS.md"
    write_section("extra", "x", page)
    assert read_section("extra", page) == "x"
    assert read_section("missing", page) is None
    with pytest.raises(ValueError):
        write_section("Bad Name", "x", page)
