"""Parse untrusted XML safely: bounded size, no DTDs or entities (billion laughs, XXE)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from engine.data.errors import DataError

MAX_XML_BYTES = 32 * 1024 * 1024
_FORBIDDEN = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)


def parse_xml_bytes(data: bytes, where: str = "XML") -> ET.Element:
    if len(data) > MAX_XML_BYTES:
        raise DataError(f"{where}: {len(data)} bytes is over the {MAX_XML_BYTES} byte limit")
    if _FORBIDDEN.search(data):
        raise DataError(f"{where}: XML with a DOCTYPE or ENTITY declaration is refused")
    try:
        return ET.fromstring(data)
    except (ET.ParseError, LookupError, ValueError) as exc:  # LookupError: unknown encoding
        raise DataError(f"{where}: malformed XML ({exc})") from None


def parse_xml_file(path) -> ET.Element:
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_XML_BYTES:
            raise DataError(f"{path}: {size} bytes is over the {MAX_XML_BYTES} byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_xml_bytes(data, str(path))


def local(tag: str) -> str:
    """Tag without its {namespace}."""
    return tag.rsplit("}", 1)[-1]
