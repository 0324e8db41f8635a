"""The identifier values the audit searches for ("needles"): read in bulk, they must be exactly the
values Python's own `\\w+` tokens of each lower-cased value give, one by one, accents folded as the
scrubber folds them (a needle lost is an identifier never searched for)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import pipeline.audit as audit
from builders import response, write_export
from conftest import REPO, make_project
from pipeline.anonymity import AuditRules
from pipeline.audit import _add_needles, identifier_values
from pipeline.ingest import read_export
from pipeline.instrument import Disclosure, load_instrument

INSTRUMENT = load_instrument(REPO / "surveys" / "2025" / "instrument.yaml")
RULES = AuditRules(min_identifier_chars=5, min_coordinate_decimals=4)


def needles_of(columns: list[tuple[str, object]], rules: AuditRules = RULES) -> dict[str, tuple[str, ...]]:
    needles: dict[str, tuple[str, ...]] = {}
    for kind, values in columns:
        _add_needles(needles, {}, kind, values, rules)
    return needles


def test_needles_are_the_lower_cased_word_tokens_of_each_value() -> None:
    values = pd.Series(["Ann.Lee@Example.ORG", "  ann lee@example.org ", "203.0.113.7", "Bob", "A_B_C_D",
                        "ΟΔΥΣΣΕΥΣ Pappas", "José-García", "İpek", None, "...", "x\x00y zzzzz"], dtype=object)
    # Worked out by hand: tokens are runs of letters, digits and "_"; a final capital sigma lowers
    # to "ς"; "İ" lowers to "i" and a combining dot, which is dropped as any combining accent is; the
    # accented Latin letters lose their accents (Greek keeps its letters: they are no accented Latin).
    assert needles_of([("email", values)]) == {
        "ann lee example org": ("email",),
        "203 0 113 7": ("email",),
        "a_b_c_d": ("email",),
        "οδυσσευς pappas": ("email",),
        "jose garcia": ("email",),
        "x y zzzzz": ("email",),  # a NUL inside a value separates tokens like any other non-word character
    }  # "Bob" and "ipek" have fewer than 5 token characters; None and "..." none


def test_texts_and_numbers_alike_and_every_kind_a_needle_has() -> None:
    needles = needles_of([("response_id", ["R_abc12", 123456, 1234.5, ["a list", "is skipped"]]),
                          ("ip_address", ["r_ABC12", "10.0.0.1"]),
                          ("response_id", ["R_ABC12"])])
    assert needles == {"r_abc12": ("ip_address", "response_id"), "123456": ("response_id",),
                       "1234 5": ("response_id",), "10 0 0 1": ("ip_address",)}


def test_coordinates_need_their_decimals() -> None:
    needles = needles_of([("latitude", ["43.125", "43.6532", "43", "-79.38001"])])
    assert needles == {"43 6532": ("latitude",), "79 38001": ("latitude",)}


def test_values_read_in_batches_give_the_same_needles(monkeypatch: pytest.MonkeyPatch) -> None:
    values = [f"User{i % 7}.Name{i}@Mail.org" for i in range(40)] + ["Ωmega ΣΣ", "plain"]
    expected = {" ".join(re.findall(r"\w+", v.lower())): ("email",) for v in values}
    expected = {k: v for k, v in expected.items() if len(k.replace(" ", "")) >= 5}
    monkeypatch.setattr(audit, "NEEDLE_BATCH", 3)
    assert needles_of([("email", values), ("email", values[:10])]) == expected


def test_the_audit_reads_only_the_answers_holding_identifiers(tmp_path: Path) -> None:
    path = write_export(tmp_path / "raw" / "2025" / "export.csv", INSTRUMENT,
                        [response(i, {"paid_sick_days": "1"}) for i in range(1, 6)])
    direct = {q.id for q in INSTRUMENT.by_disclosure(Disclosure.direct)}
    full, few = read_export(path, INSTRUMENT), read_export(path, INSTRUMENT, answers_of=direct)
    assert list(few.answers.columns) == [c for c in full.answers.columns if c in direct]
    assert "paid_sick_days" in full.answers.columns and "paid_sick_days" not in few.answers.columns
    pd.testing.assert_frame_equal(few.answers, full.answers[list(few.answers.columns)])
    pd.testing.assert_frame_equal(few.identifiers, full.identifiers)


def test_identifier_values_of_an_export(tmp_path: Path) -> None:
    paths = make_project(tmp_path / "project")
    rows = [response(1, {"contact_email": "S.Nik@Mail.GR"}, RecipientFirstName="Σοφία",
                     RecipientLastName="ΝΙΚΟΛΑΟΥΣ", IPAddress="198.51.100.23", LocationLatitude="43.65321",
                     LocationLongitude="-79.3", RecipientEmail="sofia.n@work.example"),
            response(2, RecipientFirstName="Ann", RecipientLastName="Lee", IPAddress="198.51.100.23")]
    write_export(paths.raw / "2025" / "export.csv", INSTRUMENT, rows)
    audit._NEEDLES_READ.clear()
    needles, unreadable = identifier_values(paths, RULES)
    assert unreadable == []
    assert needles["σοφία νικολαους"] == ("full_name",)  # final sigma
    assert needles["ann lee"] == ("full_name",)
    # the platform's recipient email and the one left in the contact question: both searched for
    assert needles["sofia n work example"] == ("email",)
    assert needles["s nik mail gr"] == ("contact_email",)
    assert needles["198 51 100 23"] == ("ip_address",)
    assert needles["r_test00000000001"] == ("response_id",)
    assert needles["43 65321"] == ("latitude",)
    assert not {"79 3", "σοφία", "lee"} & needles.keys()  # a short coordinate, name parts alone


@pytest.mark.parametrize("batch", [1, 2, 1 << 16])
def test_the_values_of_a_column_are_searched_together_as_each_alone(batch: int, monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import Counter

    monkeypatch.setattr(audit, "NEEDLE_BATCH", batch)
    index = audit.NeedleIndex({"ann lee": ("full_name",), "43 6500": ("latitude",), "ΣΟΦΊΑ".lower(): ("first_name",)})
    texts = ["Ann Lee wrote", "ann", "43.6500 and 43.6500", "43 only", "lee ann", "ann\x00lee", "σοφία", "ann", "lee"]
    # by hand: "ann lee" twice (a NUL inside a value separates words as a space does), never across
    # two values ("ann", "lee"); the latitude twice in one value; the first name once
    assert Counter(audit._matches_among(texts, index)) == Counter({"full_name": 2, "latitude": 2, "first_name": 1})
    assert list(audit._matches_among(["nothing here", "43"], index)) == []


def test_whole_number_columns_are_searched_as_their_text_is(tmp_path: Path) -> None:
    """A number stored in the warehouse (a phone number or an external reference kept as digits) is
    found as its text would be: every column of every integer type, either sign."""
    import duckdb

    paths = make_project(tmp_path / "project")
    paths.warehouse_dir.mkdir(parents=True, exist_ok=True)
    needles = {"4165550123": ("phone",), "98765": ("external_reference",), "00042": ("external_reference",),
               "1234 5": ("latitude",), "r_abc12": ("response_id",)}
    columns = {"TINYINT": [12, -7], "SMALLINT": [-9876, 9876], "INTEGER": [98765, -98765, 42, 12345],
               "BIGINT": [4165550123, -4165550123, 5], "UBIGINT": [4165550123, 18446744073709551615],
               "UINTEGER": [98765], "VARCHAR": ["98765", "x 4165550123 y"]}
    with duckdb.connect(str(paths.warehouse)) as con:
        for i, (kind, values) in enumerate(columns.items()):
            con.execute(f"CREATE TABLE t{i} (v {kind})")
            con.executemany(f"INSERT INTO t{i} VALUES (?)", [[v] for v in values + values])  # each twice
    # expected, worked out from the values' texts with Python's own tokens: one finding per distinct
    # value a needle's tokens occur in (at every place), by column
    expected: dict[tuple[str, str], int] = {}
    for i, values in enumerate(columns.values()):
        for value in set(values):
            tokens = re.findall(r"\w+", str(value).lower())
            for needle, kinds in needles.items():
                size = needle.count(" ") + 1
                hits = sum(" ".join(tokens[j:j + size]) == needle for j in range(len(tokens)))
                for kind in kinds:
                    if hits:
                        key = (f"warehouse t{i}.v", kind)
                        expected[key] = expected.get(key, 0) + hits
    assert ("warehouse t3.v", "phone") in expected and ("warehouse t2.v", "external_reference") in expected
    with duckdb.connect(str(paths.warehouse), read_only=True) as con:
        check = audit.check_identifiers(paths, con, needles, [])
    found = {(d["where"], d["identifier"]): d["occurrences"] for d in check.details}
    assert found == expected


def test_keyed_hashes_are_left_to_the_database_and_every_other_text_is_read() -> None:
    """A million response, content and fix keys a column (64 hex digits, one token no identifier is)
    are not brought into Python to be matched; a name, an upper-case or shorter hex word still are."""
    import duckdb

    from pipeline.audit import _distinct_texts

    con = duckdb.connect()
    con.execute("CREATE TABLE t (text VARCHAR)")
    con.execute("INSERT INTO t VALUES (repeat('a1', 32)), ('Jane Doe'), (repeat('F', 64)), (repeat('b', 63)), (NULL), "
                "(repeat('c', 64) || ' Jane')")
    assert sorted(_distinct_texts(con, "t", "text")) == sorted(["Jane Doe", "F" * 64, "b" * 63, "c" * 64 + " Jane"])
