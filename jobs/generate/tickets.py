"""Support tickets: free text that quotes its author's identifiers in many spellings (the scrubber's
and the erasure scan's test material), built from templates with typed slots."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from anonymizers.checkdigits import luhn_check_digit_col
from jobs.generate.draw import Draw, GenerateOptions, _timestamp_within

# Ticket bodies quote their author's own values (name, kana, address, phone, email) and the
# identifiers the scrubber detects, in the forms people type: the recall of `scrub` and
# `scrub_own_values` is measured on them. Each {slot} is a column below; SLOT_KINDS says what it is.
TICKET_TEMPLATES = [
    "電話番号は{phone}です。折り返しご連絡ください。",
    "登録メール {email} にパスワード再設定のメールが届きません",
    "カード番号 {card} の請求が二重になっています。",
    "マイナンバー{my_number}を誤って入力しました。削除してください。",
    "Please call me back at {phone}, the hub keeps disconnecting.",
    "My email is {email}; I cannot log in since the update 🙏",
    "Charged twice on card {card_spaced}. Order ref 1234-5678-9012-3456.",
    "携帯：{phone_fullwidth}　までお願いします。",
    "デバイスの温度表示がおかしいです。再起動しても直りません。",
    "The scale shows wrong weight after firmware update.",
    "住民票コード：{juminhyo}。住所変更の手続きをお願いします。{name}（{phone}）",
    "住基カードの住民票コード {juminhyo_spaced} の登録を取り消してください（{kana}）",
    "引っ越しました。新住所は〒{postal} {prefecture}{city}{address_line}です。{name_nospace}",
    "{name}です。住所は{prefecture}{city}{address_hyphen}、電話は{phone_plain}です。",
    "基礎年金番号 {pension} を登録したいのですが、{surname}と申します。",
    "年金番号は{pension_plain}です。連絡先：{phone}",
    "保険証の記号は{hi_symbol}、番号は{hi_number}です（{kana}）",
    "保険者番号：{insurer}／被保険者 {name_fullwidth_space}／連絡先 {email}",
    "返金先口座：{bank}銀行 本店営業部 普通 {account} 名義 {kana_halfwidth}",
    "口座番号 {branch}-{account}（当座）にお願いします。メール：{email}",
    "ゆうちょ銀行 記号{yucho_symbol} 番号{yucho_number}に返金してください。{kana_hiragana}（{phone}）",
    "Router WAN IP is {ipv4} and the hub's MAC address is {mac}. — {name}",
    "IPv6 {ipv6} から接続できません。MAC：{mac_dash}　連絡先 {phone}",
    "The switch shows {mac_cisco} on port 3; last IP {ipv4}. Regards, {surname}",
    "This is {name} ({email_upper}). My phone number changed to {phone_intl}.",
    "{kana}様より入電。折り返し先 {phone_paren}",
    "連絡先メール {email_fullwidth}、お名前 {name}",
    "アカウント名義が{name_nospace}のままです。{kana_nospace}に変更できますか",
    "I am {name}, my postcode is {postal} and my pension number is {pension}. Email: {email}",
    "Health insurance card: insurer number {insurer}. Bank account: {branch} {account}.",
    "〒{postal}　{prefecture}{city}{address_line}　{name}様宛に交換品を送ってください。",
    "{surname}です。保険証（記号・番号 {hi_symbol}・{hi_number}）の写しを送ります。",
]
SLOT_KINDS = {
    "phone": "OWN_PHONE", "phone_fullwidth": "OWN_PHONE", "phone_plain": "OWN_PHONE", "phone_intl": "OWN_PHONE",
    "phone_paren": "OWN_PHONE", "email": "OWN_EMAIL", "email_upper": "OWN_EMAIL", "email_fullwidth": "OWN_EMAIL",
    "name": "OWN_NAME", "name_nospace": "OWN_NAME", "name_fullwidth_space": "OWN_NAME", "surname": "OWN_NAME",
    "kana": "OWN_KANA", "kana_nospace": "OWN_KANA", "kana_hiragana": "OWN_KANA", "kana_halfwidth": "OWN_KANA",
    "address_line": "OWN_ADDRESS", "address_hyphen": "OWN_ADDRESS",
    "card": "CARD", "card_spaced": "CARD", "my_number": "MYNUMBER",
    "juminhyo": "JUMINHYO", "juminhyo_spaced": "JUMINHYO", "pension": "PENSION", "pension_plain": "PENSION",
    "hi_symbol": "HEALTH_INSURANCE", "hi_number": "HEALTH_INSURANCE", "insurer": "HEALTH_INSURANCE",
    "account": "BANK_ACCOUNT", "yucho_symbol": "BANK_ACCOUNT", "yucho_number": "BANK_ACCOUNT",
    "postal": "POSTAL", "ipv4": "IP", "ipv6": "IP", "mac": "MAC", "mac_dash": "MAC", "mac_cisco": "MAC",
    # context, not identifying on its own
    "prefecture": None, "city": None, "branch": None, "bank": None,
}
_BANKS = ["みずほ", "三菱UFJ", "三井住友", "りそな", "横浜", "千葉", "福岡", "静岡"]


def _halfwidth_kana(column: Column) -> Column:
    """Katakana as half-width katakana (ヤマダ -> ﾔﾏﾀﾞ): a voiced kana becomes its base and a mark."""
    import unicodedata

    single, voiced, semi = {}, [], []
    for cp in range(0xFF66, 0xFF9E):
        full = unicodedata.normalize("NFKC", chr(cp))
        single[full] = chr(cp)
        for mark, marked in (("\u3099", voiced), ("\u309a", semi)):
            composed = unicodedata.normalize("NFC", full + mark)
            if len(composed) == 1:
                single[composed] = chr(cp)
                marked.append(composed)
    column = F.regexp_replace(column, f"([{''.join(voiced)}])", "$1ﾞ")
    column = F.regexp_replace(column, f"([{''.join(semi)}])", "$1ﾟ")
    return F.translate(column, "".join(single), "".join(single.values()))


def _ticket_slots(draw: Draw) -> dict[str, Column]:
    """The Column of every template slot (account columns and deterministic draws)."""
    phone, email = F.col("phone"), F.col("email")
    name, kana = F.col("name_kanji"), F.col("name_kana")
    is_ja = F.col("region") == "JP"
    parts = F.split(name, " ")
    # Surname for Japanese names, last name for the others; too short to be told apart: the full name.
    surname = F.when(is_ja, F.element_at(parts, 1)).otherwise(F.element_at(parts, -1))
    surname = F.when(F.length(surname) >= F.when(is_ja, 2).otherwise(3), surname).otherwise(F.regexp_replace(name, " ", ""))
    hira = "".join(chr(cp) for cp in range(0x3041, 0x3097))
    kata = "".join(chr(cp + 0x60) for cp in range(0x3041, 0x3097))

    def digits(salt: str, width: int, first_nonzero: bool = False) -> Column:
        low = 10 ** (width - 1) if first_nonzero else 0
        return F.lpad(draw.integer(salt, low, 10 ** width - 1).cast("string"), width, "0")

    def hex_group(salt: str) -> Column:
        return F.lower(F.hex(draw.integer(salt, 1, 65535)))

    juminhyo = digits("juminhyo", 11, first_nonzero=True)
    insurer_payload = F.concat(draw.choice("hobetsu", [("01", 0.4), ("06", 0.3), ("31", 0.1), ("39", 0.2)]),
                               F.lpad(draw.integer("hi_pref", 1, 47).cast("string"), 2, "0"), digits("hi_insurer", 3))
    mac = F.concat(F.lit("a4"), F.lpad(F.lower(F.hex(draw.integer("mac", 0, 2 ** 40 - 1))), 10, "0"))
    mac_colon = F.regexp_replace(mac, "(..)(?!$)", "$1:")
    pension = F.concat(digits("pension_office", 4, first_nonzero=True), F.lit("-"), digits("pension_serial", 6))
    return {
        "phone": phone, "email": email, "card": F.col("card_number"), "my_number": F.col("my_number"),
        "phone_fullwidth": F.translate(phone, "0123456789-+", "０１２３４５６７８９－＋"),
        "phone_plain": F.regexp_replace(phone, "[^0-9+]", ""),
        "phone_intl": F.when(phone.startswith("0"), F.concat(F.lit("+81 "), F.substring(phone, 2, 20))).otherwise(phone),
        "phone_paren": F.when(phone.startswith("0"), F.regexp_replace(phone, "^(0[0-9]+)-", "($1)"))
                        .otherwise(F.regexp_replace(phone, "^\\+1-([0-9]{3})-", "+1 ($1) ")),
        "email_upper": F.upper(email),
        "email_fullwidth": F.translate(email, "0123456789@.abcdefghijklmnopqrstuvwxyz",
                                       "０１２３４５６７８９＠．ａｂｃｄｅｆｇｈｉｊｋｌｍｎｏｐｑｒｓｔｕｖｗｘｙｚ"),
        "card_spaced": F.regexp_replace(F.col("card_number"), "(\\d{4})(?!$)", "$1 "),
        "name": name, "name_nospace": F.regexp_replace(name, " ", ""),
        "name_fullwidth_space": F.regexp_replace(name, " ", "　"), "surname": surname,
        "kana": kana, "kana_nospace": F.regexp_replace(kana, " ", ""),
        "kana_hiragana": F.translate(kana, kata, hira), "kana_halfwidth": _halfwidth_kana(kana),
        "prefecture": F.col("prefecture"), "city": F.col("city"), "address_line": F.col("address_line"),
        "address_hyphen": F.regexp_replace(F.col("address_line"), "([0-9]+)丁目([0-9]+)番([0-9]+)号", "$1-$2-$3"),
        "juminhyo": juminhyo,
        "juminhyo_spaced": F.concat_ws(" ", F.substring(juminhyo, 1, 4), F.substring(juminhyo, 5, 4), F.substring(juminhyo, 9, 3)),
        "pension": pension, "pension_plain": F.regexp_replace(pension, "-", ""),
        "hi_symbol": digits("hi_symbol", 4, first_nonzero=True), "hi_number": draw.integer("hi_number", 100, 9_999_999).cast("string"),
        "insurer": F.concat(insurer_payload, luhn_check_digit_col(insurer_payload, 7)),
        "bank": draw.choice("bank", [(b, 1 / len(_BANKS)) for b in _BANKS]),
        "branch": digits("branch", 3), "account": digits("account", 7),
        "yucho_symbol": F.concat(F.lit("1"), digits("yucho_symbol", 3), F.lit("0")),
        "yucho_number": F.concat(digits("yucho_number", 7, first_nonzero=True), F.lit("1")),
        "postal": F.concat(digits("postal3", 3, first_nonzero=True), F.lit("-"), digits("postal4", 4)),
        "ipv4": F.concat_ws(".", draw.integer("ip1", 1, 223), draw.integer("ip2", 0, 255), draw.integer("ip3", 0, 255),
                            draw.integer("ip4", 1, 254)),
        "ipv6": F.concat(F.lit("2001:db8:"), hex_group("ip6a"), F.lit(":"), hex_group("ip6b"), F.lit("::"), hex_group("ip6c")),
        "mac": F.upper(mac_colon), "mac_dash": F.regexp_replace(mac_colon, ":", "-"),
        "mac_cisco": F.regexp_replace(mac, "(....)(?!$)", "$1."),
    }


def support_tickets(spark: SparkSession, options: GenerateOptions, account_df: DataFrame,
                    with_planted: bool = False) -> DataFrame:
    """One ticket for ~30% of subjects. ``with_planted`` adds ``planted`` (array of kind/value: what
    the body quotes, for recall tests); the lake table never has it."""
    from string import Formatter

    df = account_df.select("account_id", "email", "phone", "card_number", "my_number", "name_kanji", "name_kana",
                           "prefecture", "city", "address_line", "region",
                           F.col("created_at").alias("account_created_at"))
    draw = Draw(options.seed, F.xxhash64(F.col("account_id")))
    df = df.where(draw.uniform("has_ticket") < 0.3)
    template_index = F.pmod(draw.hash("template"), F.lit(len(TICKET_TEMPLATES)))
    template = F.element_at(F.array(*[F.lit(t) for t in TICKET_TEMPLATES]), (template_index + 1).cast("int"))
    slots = {name: F.coalesce(column, F.lit("")) for name, column in _ticket_slots(draw).items()}
    used = {field for t in TICKET_TEMPLATES for _, field, _, _ in Formatter().parse(t) if field}
    # Every slot once, whatever the template (a template without it is left as it is): the
    # generated code stays small, one expression per slot rather than one per template and slot.
    body = template
    for name in sorted(used):
        body = F.replace(body, F.lit("{" + name + "}"), slots[name])
    planted = F.transform(
        F.filter(F.array(*[F.struct(F.lit("{" + n + "}").alias("slot"), F.lit(SLOT_KINDS[n]).alias("kind"),
                                    slots[n].alias("value")) for n in sorted(used) if SLOT_KINDS[n]]),
                 lambda s: template.contains(s["slot"])),
        lambda s: F.struct(s["kind"].alias("kind"), s["value"].alias("value")))
    return df.select(
        F.concat(F.lit("T"), F.substring(F.sha2(F.col("account_id"), 256), 1, 12)).alias("ticket_id"),
        "account_id",
        _timestamp_within(draw, "created_at", options.as_of, 900),
        draw.choice("channel", [("web", 0.6), ("phone", 0.25), ("store", 0.15)]).alias("channel"),
        body.alias("body"),
        "region",
        *([planted.alias("planted")] if with_planted else []),
    )


