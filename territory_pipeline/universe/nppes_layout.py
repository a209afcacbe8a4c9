"""The layout of the NPPES monthly ``npidata_pfile`` and its ``pl_pfile``.

The 330-column header is built from the published layout (NPPES Data
Dissemination readme, Exhibit 2-1) rather than copied from a file: fixed
leading columns, 15 taxonomy groups of four, 50 other-identifier groups of
four, the organization block and 15 taxonomy-group columns.
"""

from __future__ import annotations

import re

LEADING_COLUMNS: tuple[str, ...] = (
    "NPI",
    "Entity Type Code",
    "Replacement NPI",
    "Employer Identification Number (EIN)",
    "Provider Organization Name (Legal Business Name)",
    "Provider Last Name (Legal Name)",
    "Provider First Name",
    "Provider Middle Name",
    "Provider Name Prefix Text",
    "Provider Name Suffix Text",
    "Provider Credential Text",
    "Provider Other Organization Name",
    "Provider Other Organization Name Type Code",
    "Provider Other Last Name",
    "Provider Other First Name",
    "Provider Other Middle Name",
    "Provider Other Name Prefix Text",
    "Provider Other Name Suffix Text",
    "Provider Other Credential Text",
    "Provider Other Last Name Type Code",
    "Provider First Line Business Mailing Address",
    "Provider Second Line Business Mailing Address",
    "Provider Business Mailing Address City Name",
    "Provider Business Mailing Address State Name",
    "Provider Business Mailing Address Postal Code",
    "Provider Business Mailing Address Country Code (If outside U.S.)",
    "Provider Business Mailing Address Telephone Number",
    "Provider Business Mailing Address Fax Number",
    "Provider First Line Business Practice Location Address",
    "Provider Second Line Business Practice Location Address",
    "Provider Business Practice Location Address City Name",
    "Provider Business Practice Location Address State Name",
    "Provider Business Practice Location Address Postal Code",
    "Provider Business Practice Location Address Country Code (If outside U.S.)",
    "Provider Business Practice Location Address Telephone Number",
    "Provider Business Practice Location Address Fax Number",
    "Provider Enumeration Date",
    "Last Update Date",
    "NPI Deactivation Reason Code",
    "NPI Deactivation Date",
    "NPI Reactivation Date",
    "Provider Sex Code",  # 'Provider Gender Code' in files before about 2025
    "Authorized Official Last Name",
    "Authorized Official First Name",
    "Authorized Official Middle Name",
    "Authorized Official Title or Position",
    "Authorized Official Telephone Number",
)

TAXONOMY_SLOTS = 15
OTHER_IDENTIFIER_SLOTS = 50

ORGANIZATION_COLUMNS: tuple[str, ...] = (
    "Is Sole Proprietor",
    "Is Organization Subpart",
    "Parent Organization LBN",
    "Parent Organization TIN",
    "Authorized Official Name Prefix Text",
    "Authorized Official Name Suffix Text",
    "Authorized Official Credential Text",
)


def taxonomy_code_column(slot: int) -> str:
    return f"Healthcare Provider Taxonomy Code_{slot}"


def license_number_column(slot: int) -> str:
    return f"Provider License Number_{slot}"


def license_state_column(slot: int) -> str:
    return f"Provider License Number State Code_{slot}"


def primary_switch_column(slot: int) -> str:
    return f"Healthcare Provider Primary Taxonomy Switch_{slot}"


def taxonomy_group_column(slot: int) -> str:
    return f"Healthcare Provider Taxonomy Group_{slot}"


def _build_header() -> tuple[str, ...]:
    cols: list[str] = list(LEADING_COLUMNS)
    for n in range(1, TAXONOMY_SLOTS + 1):
        cols += [taxonomy_code_column(n), license_number_column(n), license_state_column(n), primary_switch_column(n)]
    for n in range(1, OTHER_IDENTIFIER_SLOTS + 1):
        cols += [
            f"Other Provider Identifier_{n}",
            f"Other Provider Identifier Type Code_{n}",
            f"Other Provider Identifier State_{n}",
            f"Other Provider Identifier Issuer_{n}",
        ]
    cols += list(ORGANIZATION_COLUMNS)
    cols += [taxonomy_group_column(n) for n in range(1, TAXONOMY_SLOTS + 1)]
    cols.append("Certification Date")
    return tuple(cols)


NPIDATA_HEADER: tuple[str, ...] = _build_header()
assert len(NPIDATA_HEADER) == 330

PL_PFILE_HEADER: tuple[str, ...] = (
    "NPI",
    "Provider Secondary Practice Location Address- Address Line 1",
    "Provider Secondary Practice Location Address-  Address Line 2",
    "Provider Secondary Practice Location Address - City Name",
    "Provider Secondary Practice Location Address - State Name",
    "Provider Secondary Practice Location Address - Postal Code",
    "Provider Secondary Practice Location Address - Country Code (If outside U.S.)",
    "Provider Secondary Practice Location Address - Telephone Number",
    "Provider Secondary Practice Location Address - Telephone Extension",
    "Provider Practice Location Address - Fax Number",
)

# Header aliases across NPPES vintages, keyed by normalized name.
HEADER_ALIASES: dict[str, str] = {
    "providergendercode": "providersexcode",
}


def normalize_header(name: str) -> str:
    """Case-, space- and punctuation-insensitive key for a header name.

    ``'Provider  Sex Code '`` and ``'provider sex code'`` both give
    ``'providersexcode'``; the known vintage alias ``Provider Gender Code``
    maps onto the same key.
    """
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return HEADER_ALIASES.get(key, key)
