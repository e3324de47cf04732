"""ISO 4217 currency codes and their minor units (the number of decimal places an amount may have).

Source: the ISO 4217 list one (current funds), codes with "N.A." minor units (precious metals,
SDR, test codes) are left out because a booking cannot be paid in them.
"""

from decimal import Decimal

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_FOUR_DECIMALS = "CLF UYW"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS "
    "GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL "
    "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK "
    "PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG"
)

MINOR_UNITS: dict[str, int] = {
    **{code: 0 for code in _ZERO_DECIMALS.split()},
    **{code: 2 for code in _TWO_DECIMALS.split()},
    **{code: 3 for code in _THREE_DECIMALS.split()},
    **{code: 4 for code in _FOUR_DECIMALS.split()},
}

# The largest amount the service stores, in any currency (NUMERIC(14, 4) holds it with room to spare).
MAX_AMOUNT = Decimal("99999999.99")
_QUANTUMS = {digits: Decimal(1).scaleb(-digits) for digits in set(MINOR_UNITS.values())}


def format_amount(amount: Decimal, currency: str) -> str:
    """`amount` as a plain decimal string with exactly the currency's minor-unit digits."""
    return format(amount.quantize(_QUANTUMS[MINOR_UNITS[currency]]), "f")


def decimal_places(amount: Decimal) -> int:
    exponent = amount.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def amount_problem(amount: Decimal, currency: str) -> str | None:
    """Why `amount` is not a valid amount of `currency`, or None when it is."""
    if amount <= 0:
        return "must be greater than 0"
    if amount > MAX_AMOUNT:
        return f"must be at most {MAX_AMOUNT}"
    allowed = MINOR_UNITS[currency]
    if decimal_places(amount) > allowed:
        return f"{currency} allows at most {allowed} decimal places"
    return None
