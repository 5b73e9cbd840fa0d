"""FITS headers read block by block, each card's value parsed once: the header walk of ingest.

Ingest reads nothing of a raw but its headers, and reads thousands of them: astropy's
``Header`` parses a card's value on first use at ~30 us a card (most of it configuration
lookups), which made header parsing most of a raw's ingest.  :func:`read_header` reads the
2880-byte blocks up to the END card and parses the cards in the plain fixed and free
formats of the FITS standard (a string, a logical, an integer, a real) with one regular
expression each; every other card (complex values, HIERARCH, record-valued DP/DQ cards,
undefined values, anything unusual) is parsed by astropy's ``Card``, and a header that is
not plain printable ASCII, holds CONTINUE cards or has no END is read by astropy's
``Header.fromfile`` as before, so its reading and its errors are astropy's.  The values
agree with astropy's ``Header`` card for card (tests/test_fits_cards.py checks every
header of the test cameras and hostile cards against it).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, NamedTuple

BLOCK = 2880
"""FITS headers and data come in blocks of this many bytes."""
CARD = 80
"""Bytes of one header card."""

_END_CARD = b"END" + b" " * (CARD - 3)
_NOT_PRINTABLE = re.compile(rb"[^ -~]")
_KEYWORD = re.compile(r"[A-Z0-9_-]+\Z")
_COMMENTARY = frozenset({"", "COMMENT", "HISTORY"})
_VALUE = re.compile(r" *(?:'((?:[^']|'')*)'|([TF])|([+-]?\d+)|([+-]?(?:\d+\.?\d*|\.\d+)(?:[ED][+-]?\d+)?))"
                    r" *(?:/.*)?\Z")
"""A value in a plain format (string, logical, integer, real), then at most a comment."""
_RECORD_VALUED = re.compile(r" *[A-Za-z_]\w*(?:\.\w+)* *:")
"""A string that may be a record-valued card's (``DP1 = 'AXIS.1: 1'``): astropy reads those."""


class Card(NamedTuple):
    """One card: keyword, value (as astropy's ``Header`` gives it) and its 80-character image."""

    keyword: str
    value: Any
    image: str


class FitsHeader(Mapping[str, Any]):
    """One HDU's header: its cards in order, and each keyword's value (the first card of it,
    as astropy's ``Header[keyword]``)."""

    def __init__(self, cards: list[Card]) -> None:
        self.cards = cards
        self._values: dict[str, Any] = {}
        for card in cards:
            if card.keyword not in self._values:  # an undefined value is None, as astropy's Header has it
                self._values[card.keyword] = None if _is_undefined(card.value) else card.value

    def __getitem__(self, keyword: str) -> Any:
        return self._values[keyword]

    def __contains__(self, keyword: object) -> bool:
        return keyword in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, keyword: str, default: Any = None) -> Any:  # the dict's, not Mapping's (called per card)
        return self._values.get(keyword, default)

    def keys(self) -> Any:
        return self._values.keys()

    def __repr__(self) -> str:
        return f"FitsHeader({len(self.cards)} cards)"

    def with_cards(self, extra: list[Card]) -> FitsHeader:
        """This header with ``extra`` cards appended."""
        return FitsHeader(self.cards + extra)

    def text(self, keep: Any = None) -> str:
        """The card images (those whose keyword ``keep`` accepts), as a header string for astropy."""
        return "".join(c.image for c in self.cards if keep is None or keep(c.keyword))

    @classmethod
    def from_astropy(cls, header: Any) -> FitsHeader:
        """The cards of an astropy ``Header`` (a CONTINUE'd string is one card, as astropy has it)."""
        return cls([Card(c.keyword, c.value, c.image) for c in header.cards])


def _is_undefined(value: Any) -> bool:
    return type(value).__name__ == "Undefined"  # astropy's UNDEFINED (only astropy's Card makes one)


def read_header(stream: BinaryIO) -> FitsHeader:
    """The header at the stream's position; the stream is left after its last block (the data).

    Raises what astropy's ``Header.fromfile`` raises for a header it cannot read (ValueError,
    OSError, EOFError), and ValueError naming the card for a card whose value does not parse.
    """
    start = stream.tell()
    blocks = []
    while True:
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            return _by_astropy(stream, start)  # no END before the end of the file: astropy says so
        blocks.append(block)
        end = _end_index(block)
        if end >= 0:
            break
    data = b"".join(blocks)
    end += BLOCK * (len(blocks) - 1)
    if _NOT_PRINTABLE.search(data) or data[end + CARD:].strip(b" "):
        return _by_astropy(stream, start)
    text = data[:end].decode("ascii")
    cards = []
    seen = _SEEN
    for offset in range(0, end, CARD):
        image = text[offset:offset + CARD]
        card = seen.get(image)
        if card is None:
            keyword = image[:8].rstrip()
            if keyword in ("CONTINUE", "END"):
                return _by_astropy(stream, start)  # a long string (astropy joins its pieces), a malformed END
            card = _card(keyword, image)
            if len(seen) >= _SEEN_KEPT:
                seen.clear()
            seen[image] = card
        cards.append(card)
    return FitsHeader(cards)


#: Cards parsed lately, by their image: most cards of a camera's raws repeat from file to file, and a
#: card's keyword and value depend on its 80 characters alone (its value is immutable).
_SEEN: dict[str, Card] = {}
_SEEN_KEPT = 50_000


def _end_index(block: bytes) -> int:
    """The offset of the END card in a block, or -1."""
    if b"END" not in block:
        return -1
    for offset in range(0, BLOCK, CARD):
        if block[offset:offset + 3] == b"END" and block[offset:offset + CARD] == _END_CARD:
            return offset
    return -1


def _card(keyword: str, image: str) -> Card:
    if keyword in _COMMENTARY:
        return Card(keyword, image[8:].rstrip(), image)
    if image[8:10] == "= " and (match := _VALUE.match(image, 10)) and _KEYWORD.match(keyword):
        string, logical, integer, real = match.groups()
        if integer is not None:
            return Card(keyword, int(integer), image)
        if real is not None:
            return Card(keyword, float(real.replace("D", "E")), image)
        if logical is not None:
            return Card(keyword, logical == "T", image)
        if not _RECORD_VALUED.match(string):
            return Card(keyword, string.replace("''", "'").rstrip(), image)
    return _astropy_card(image)


def _astropy_card(image: str) -> Card:
    from astropy.io import fits

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        card = fits.Card.fromstring(image)
        try:
            return Card(card.keyword, card.value, image)
        except Exception as exc:  # astropy's VerifyError: a value in no FITS format
            raise ValueError(f"card {image[:8].strip()!r} does not parse: {exc}") from None


def _by_astropy(stream: BinaryIO, start: int) -> FitsHeader:
    """The header as astropy's ``Header.fromfile`` reads it (and fails to)."""
    from astropy.io import fits

    stream.seek(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy's note of blank padding, handled by the caller
        header = fits.Header.fromfile(stream, padding=True)
        cards = []
        for card in header.cards:
            try:
                cards.append(Card(card.keyword, card.value, card.image))
            except Exception as exc:
                raise ValueError(f"card {card.keyword!r} does not parse: {exc}") from None
    return FitsHeader(cards)
