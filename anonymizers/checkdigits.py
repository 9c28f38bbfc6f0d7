"""Check digits of the identifiers wasure must recognise, as plain Python and as Spark Columns.

- Luhn: payment card numbers.
- My Number (個人番号): 12 digits, the last is a mod-11 check over the first 11
  (weights 2..7 then 2..6 from the right).
- Japanese driver's licence: 12 digits, the 11th a mod-11 check over the first 10
  (weights 5,4,3,2,7,6,5,4,3,2; 10 and 11 become 0).
- Health-insurance insurer number (保険者番号): 8 digits (法別 2, 都道府県 2, 保険者別 3, 検証番号 1;
  国民健康保険: 6 digits without the 法別 pair). The 検証番号 doubles every other digit from the right
  of the payload and sums the digits of the products: the Luhn rule over the payload.
- Passport (ICAO 9303): 2 letters + 7 characters here, the last a 7-3-1 weighted check over the first
  8 (A=10 .. Z=35). Japanese passports print the check digit only in the MRZ; the synthetic lake
  appends it so that generated numbers can be validated.

The Column versions are built from substrings and arithmetic (Spark SQL functions), never a UDF.
"""
from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F


def luhn_check_digit(payload: str) -> int:
    total = 0
    for position, char in enumerate(reversed(payload), start=1):
        digit = int(char)
        if position % 2 == 1:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return (10 - total % 10) % 10


def luhn_valid(number: str) -> bool:
    digits = "".join(c for c in number if c.isdigit())
    return len(digits) >= 12 and luhn_check_digit(digits[:-1]) == int(digits[-1])


def insurer_check_digit(payload: str) -> int:
    """保険者番号 検証番号 of the 7 (or 5, 国保) payload digits (the Luhn rule)."""
    return luhn_check_digit(payload)


def insurer_number_valid(number: str) -> bool:
    return (len(number) in (6, 8) and number.isdigit()
            and insurer_check_digit(number[:-1]) == int(number[-1]))


def my_number_check_digit(payload: str) -> int:
    total = 0
    for n, char in enumerate(reversed(payload), start=1):
        weight = n + 1 if n <= 6 else n - 5
        total += int(char) * weight
    remainder = total % 11
    return 0 if remainder <= 1 else 11 - remainder


def my_number_valid(number: str) -> bool:
    return len(number) == 12 and number.isdigit() and my_number_check_digit(number[:11]) == int(number[11])


LICENCE_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def licence_check_digit(payload: str) -> int:
    remainder = sum(int(c) * w for c, w in zip(payload, LICENCE_WEIGHTS)) % 11
    digit = 11 - remainder
    return 0 if digit >= 10 else digit


def licence_valid(number: str) -> bool:
    return len(number) == 12 and number.isdigit() and licence_check_digit(number[:10]) == int(number[10])


def _icao_value(char: str) -> int:
    return int(char) if char.isdigit() else ord(char.upper()) - 55


def passport_check_digit(payload: str) -> int:
    weights = (7, 3, 1)
    return sum(_icao_value(c) * weights[i % 3] for i, c in enumerate(payload)) % 10


def passport_valid(number: str) -> bool:
    return (len(number) == 9 and number[:2].isalpha() and number[2:].isdigit()
            and passport_check_digit(number[:8]) == int(number[8]))


# ---- Spark Column versions (payload: a string Column of fixed length) ----

def _digit(payload: Column, index: int) -> Column:
    return F.substring(payload, index, 1).cast("int")


def luhn_check_digit_col(payload: Column, length: int) -> Column:
    terms = []
    for position in range(1, length + 1):           # 1 = rightmost
        digit = _digit(payload, length - position + 1)
        if position % 2 == 1:
            doubled = digit * 2
            digit = F.when(doubled > 9, doubled - 9).otherwise(doubled)
        terms.append(digit)
    total = sum(terms[1:], terms[0])
    return ((F.lit(10) - total % 10) % 10).cast("string")


def my_number_check_digit_col(payload: Column) -> Column:
    terms = []
    for n in range(1, 12):
        weight = n + 1 if n <= 6 else n - 5
        terms.append(_digit(payload, 12 - n) * weight)
    remainder = sum(terms[1:], terms[0]) % 11
    return F.when(remainder <= 1, F.lit(0)).otherwise(11 - remainder).cast("string")


def licence_check_digit_col(payload: Column) -> Column:
    terms = [_digit(payload, i + 1) * w for i, w in enumerate(LICENCE_WEIGHTS)]
    digit = F.lit(11) - sum(terms[1:], terms[0]) % 11
    return F.when(digit >= 10, F.lit(0)).otherwise(digit).cast("string")


def passport_check_digit_col(payload: Column) -> Column:
    weights = (7, 3, 1)
    terms = []
    for i in range(8):
        char = F.substring(payload, i + 1, 1)
        value = F.when(char.rlike("[0-9]"), char.cast("int")).otherwise(F.ascii(F.upper(char)) - 55)
        terms.append(value * weights[i % 3])
    return (sum(terms[1:], terms[0]) % 10).cast("string")
