"""The one normalisation of text a model reads, used as well by every filter that judges that text.

A filter that reads other text than the model does is blind to what the model understands: a
zero-width space inside "mark me", fullwidth "ｍａｒｋ", or Cyrillic "mаrk" passes a regex on the raw
text, and the model reads "mark" all the same. So `normalise` is applied once, and both the
transcript (`qualification.prompt`) and the injection filter (`qualification.verdict`) read its
result:
1. NFKC: fullwidth, mathematical and other compatibility forms become their plain letters;
2. control, format (category Cf: zero-width, BiDi, tags), private-use and surrogate characters
   are removed, and so are combining marks left on a Latin, Cyrillic or Greek letter after NFKC
   (Zalgo text): the accented letters of our languages (ã, é, ç, й) are single code points after
   NFKC and stay;
3. homoglyphs are folded: in a word mixing Latin with Cyrillic or Greek letters, the letters of
   the minority script that look like letters of the majority script become those ("mаrk" with a
   Cyrillic а → "mark"; "запиsь" → "запись"). A word written wholly in look-alikes of another
   script ("ѕсһеԁսӏеԁ") is folded to the script the message is mostly written in, so a Russian
   "хор" in a Russian message stays Russian.
The homoglyph pairs come from Unicode's confusables.txt as packaged by `confusable_homoglyphs`
(kept up to date with Unicode; its own `is_confusable` only detects, it does not fold, and UTS #39
skeletons are for comparing, not for text a model reads: they turn "m" into "rn"), restricted to
single letters between Latin, Cyrillic and Greek.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from functools import lru_cache

from confusable_homoglyphs import categories, confusables

_STRIPPED_CATEGORIES = {"Cc", "Cf", "Co", "Cs"}  # control, format (ZW*, BiDi, tags), private use, surrogates
_MARKS = {"Mn", "Me"}  # combining marks: dropped after a Latin, Cyrillic or Greek letter
_WHITESPACE_CONTROLS = {"\n", "\r", "\t", "\v", "\f", "\x85", "\u2028", "\u2029"}
_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK")
# fold only into the letters people type: ASCII Latin, the Cyrillic block's base letters, basic Greek
# (confusables.txt also pairs г with small-capital ʀ and the like, which no one types)
_PLAIN = {"LATIN": range(0x41, 0x7B), "CYRILLIC": range(0x400, 0x460), "GREEK": range(0x386, 0x3D0)}
_WORD = re.compile(r"[^\W\d_]+")


def _fold_tables() -> dict[str, dict[str, str]]:
    """script → {letter of another script: its look-alike in this script}. A letter's own entry
    wins over the reverse of another's; an upper-case letter keeps its case (confusables.txt's
    prototype of I is l: Greek Ι must become I, not l)."""
    tables: dict[str, dict[str, str]] = {s: {} for s in _SCRIPTS}
    pairs: list[tuple[str, str]] = []  # (letter, look-alike), direct entries first
    reverse: list[tuple[str, str]] = []
    for char, glyphs in confusables.confusables_data.items():
        for glyph in glyphs:
            target = glyph["c"]
            if len(char) == 1 and len(target) == 1:
                pairs.append((char, target))
                reverse.append((target, char))
    for char, target in pairs + reverse:
        source, script = categories.alias(char), categories.alias(target)
        if (source in _SCRIPTS and script in _SCRIPTS and source != script
                and ord(target) in _PLAIN[script] and target.isalpha()):
            if char.isupper() and target == "l":
                target = "I"
            tables[script].setdefault(char, target)
    tables["CYRILLIC"].setdefault("I", "І")
    tables["GREEK"].setdefault("I", "Ι")
    return tables


_TO: dict[str, dict[str, str]] = _fold_tables()
_LOOKALIKES = {c for table in _TO.values() for c in table}  # letters with a twin in another script


@lru_cache(maxsize=8192)  # `categories.alias` searches Unicode's script ranges on every call
def _script(ch: str) -> str | None:
    alias = categories.alias(ch)
    return alias if alias in _SCRIPTS else None


def _distinct_scripts(word: str) -> Counter[str]:
    """Scripts of the letters that have no twin elsewhere: they say what the word is written in."""
    return Counter(s for ch in word if ch not in _LOOKALIKES and (s := _script(ch)))


def _fold_word(word: str, dominant: str | None) -> str:
    present = {s for ch in word if (s := _script(ch))}
    if not present or (len(present) == 1 and (dominant is None or dominant in present)):
        return word  # one script, the message's own: the common case
    distinct = _distinct_scripts(word)
    if distinct:
        target = distinct.most_common(1)[0][0]
    else:  # all look-alikes: the message decides
        target = dominant or Counter(s for ch in word if (s := _script(ch))).most_common(1)[0][0]
    table = _TO[target]
    return "".join(table.get(ch, ch) if _script(ch) != target else ch for ch in word)


def fold_homoglyphs(text: str) -> str:
    """Fold look-alike letters of mixed-script words (see the module's docstring)."""
    if len({s for ch in set(text) if (s := _script(ch))}) < 2:
        return text  # written in one script (most messages): nothing can be disguised as another
    totals: Counter[str] = Counter()
    for word in _WORD.findall(text):
        totals.update(_distinct_scripts(word))
    dominant = totals.most_common(1)[0][0] if totals else None
    return _WORD.sub(lambda m: _fold_word(m.group(0), dominant), text)


def normalise(text: str, limit: int | None = None, *, keep_lines: bool = False) -> str:
    """The text as a model reads it: NFKC, invisible and control characters removed, homoglyphs
    folded, whitespace collapsed (line breaks kept with `keep_lines`), cut to `limit` characters."""
    text = unicodedata.normalize("NFKC", text)
    kept: list[str] = []
    for ch in text:
        category = unicodedata.category(ch)
        if ch == "\n" and keep_lines:
            kept.append(ch)
        elif ch in _WHITESPACE_CONTROLS:
            kept.append(" ")
        elif category in _MARKS:
            if not (kept and _script(kept[-1])):
                kept.append(ch)  # other scripts (Devanagari, Thai...) need their marks
        elif category not in _STRIPPED_CATEGORIES:
            kept.append(ch)
    lines = "".join(kept).split("\n") if keep_lines else ["".join(kept)]
    cleaned = fold_homoglyphs("\n".join(" ".join(line.split()) for line in lines).strip())
    if limit is not None and len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


def matching_form(normalised: str) -> str:
    """`normalise`d text lower-cased and without accents, for patterns: "instruções" and
    "instrucoes", "Márcame" and "marcame" read the same to a filter."""
    kept: list[str] = []
    for ch in unicodedata.normalize("NFD", normalised.casefold()):
        if unicodedata.category(ch) == "Mn" and kept and _script(kept[-1]) == "LATIN":
            continue
        kept.append(ch)
    return unicodedata.normalize("NFC", "".join(kept))  # й, ё stay whole
