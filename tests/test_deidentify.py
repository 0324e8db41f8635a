"""Free-text scrubbing: each kind of identifying detail becomes its typed placeholder."""

from __future__ import annotations

import pytest

from conftest import REPO
from pipeline.deidentify import Scrubber, load_scrubber

SCRUBBER = load_scrubber(REPO / "surveys" / "deidentification.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to pat.lee+peer@example.org anytime", "Write to [EMAIL] anytime"),
        ("Call (416) 555-0199 ext. 22 after 5", "Call [PHONE] after 5"),
        ("Call +1 613.555.0143 please", "Call [PHONE] please"),
        ("See www.my-blog.ca/story for more", "See [URL] for more"),
        ("I live near M5V 2T6 downtown", "I live near [POSTAL_CODE] downtown"),
        ("my SIN is 046-454-286", "my SIN is [SIN]"),
        ("I live at 71 Crystal Stream Suite 158.", "I live at [ADDRESS]."),
        ("Our office at 1200 Bay Street is cold", "Our office at [ADDRESS] is cold"),
        ("My manager Sarah Thompson is kind", "My manager [NAME] is kind"),
        ("I work at CAMH in Sudbury", "I work at [ORGANIZATION] in [PLACE]"),
        ("St. Brigid's Hospital cut our hours", "[ORGANIZATION] cut our hours"),
    ],
)
def test_findings_become_typed_placeholders(text: str, expected: str) -> None:
    assert SCRUBBER.scrub(text)[0] == expected


def test_ordinary_text_is_left_alone() -> None:
    text = "Hope this helps. Will it change? I worked 3 years with 12 people on 2 teams."
    assert SCRUBBER.scrub(text) == (text, 0)


def test_the_rows_own_identifiers_are_removed_even_when_no_pattern_knows_them() -> None:
    scrubber = Scrubber([], [], [])
    clean, found = scrubber.scrub("Ask Xyzzy Quux, or write xq@mail.test", extra=["Xyzzy", "Quux", "xq@mail.test"])
    assert clean == "Ask [NAME] [NAME], or write [EMAIL]"
    assert found == 3


def test_lists_are_configurable() -> None:
    scrubber = Scrubber(["Maple Leaf Peer Centre"], ["Moosonee"], [])
    assert scrubber.scrub("At maple leaf peer centre in Moosonee")[0] == "At [ORGANIZATION] in [PLACE]"
