"""Access codes: alphabet, length, uniqueness, normalisation, digests."""

import math
import re

import pytest
from django.test import override_settings

from consultations import services

CODE_FORMAT = re.compile(r"^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


def test_alphabet_is_crockford_base32_without_ambiguous_letters():
    assert len(services.ALPHABET) == 32
    assert not set("ILOU") & set(services.ALPHABET)


def test_codes_carry_at_least_60_bits():
    assert services.CODE_LENGTH * math.log2(len(services.ALPHABET)) >= 60


def test_generated_codes_are_12_characters_from_the_alphabet():
    for _ in range(200):
        code = services.generate_code()
        assert len(code) == 12
        assert set(code) <= set(services.ALPHABET)


def test_generated_codes_do_not_repeat():
    codes = {services.generate_code() for _ in range(5000)}
    assert len(codes) == 5000


def test_codes_are_shown_in_groups_of_four():
    assert services.format_code("7KQ2M9XD4TNF") == "7KQ2-M9XD-4TNF"


@pytest.mark.parametrize(
    "typed",
    ["7KQ2-M9XD-4TNF", "7kq2m9xd4tnf", " 7kq2 m9xd 4tnf ", "7KQ2–M9XD–4TNF", "7kq2-m9xd-4tnf\n"],
)
def test_normalisation_accepts_case_spaces_and_dashes(typed):
    assert services.normalise_code(typed) == "7KQ2M9XD4TNF"


def test_normalisation_maps_confusable_letters():
    assert services.normalise_code("O1IL-0000-0000") == "0111" + "0" * 8


@pytest.mark.parametrize(
    "typed",
    ["", "ABC", "7KQ2-M9XD-4TN", "7KQ2-M9XD-4TNFF", "UUUU-UUUU-UUUU", "7KQ2-M9XD-4TN!", None, 12],
)
def test_normalisation_rejects_what_cannot_be_a_code(typed):
    assert services.normalise_code(typed) is None


def test_digest_is_keyed_hmac_sha256():
    digest = services.code_digest("7KQ2-M9XD-4TNF")
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == services.code_digest("7kq2 m9xd 4tnf")
    with override_settings(CODE_HMAC_KEY="another key"):
        assert services.code_digest("7KQ2-M9XD-4TNF") != digest


def test_issued_codes_are_formatted_and_distinct(issued):
    assert CODE_FORMAT.match(issued.doctor_code)
    assert CODE_FORMAT.match(issued.patient_code)
    assert issued.doctor_code != issued.patient_code


def test_each_code_opens_its_own_role(issued):
    assert services.find_by_code(issued.doctor_code).role == "doctor"
    assert services.find_by_code(issued.patient_code).role == "patient"
    assert services.find_by_code(issued.patient_code.lower()).appointment == issued.appointment


def test_code_of_one_appointment_never_opens_another(doctor):
    first = services.create_appointment(doctor=doctor)
    second = services.create_appointment(doctor=doctor)
    assert services.find_by_code(first.patient_code).appointment == first.appointment
    assert services.find_by_code(second.patient_code).appointment == second.appointment
    assert first.appointment.patient_code_digest != second.appointment.patient_code_digest


def test_unknown_code_opens_nothing(issued):
    assert services.find_by_code("0000-0000-0000") is None
