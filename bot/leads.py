"""The lead upsert's rule, shared by the intake drain and the @lid merge (both write `leads`).

A lead is one chat of an instance (`leads` is unique per instance and phone, or LID). On conflict:
the newest push name, and the first ad referral wins, one with a click id before one without;
"first" by the time it arrived, so a chat first seen under its LID keeps that referral when merged
into its phone's lead. The lead's direction is the one whose `ad_ids` hold the referral's ad,
else the one it had, else the instance's default.
"""

from __future__ import annotations

_TAKE = ("(EXCLUDED.referral IS NOT NULL AND (l.referral IS NULL"
         " OR (l.ctwa_clid IS NULL AND EXCLUDED.ctwa_clid IS NOT NULL)"
         " OR ((l.ctwa_clid IS NULL) = (EXCLUDED.ctwa_clid IS NULL) AND EXCLUDED.referral_at < l.referral_at)))")
_REFERRAL_COLUMNS = ("ctwa_clid", "ad_source_id", "ad_source_url", "ad_title", "ad_source_type",
                     "referral", "referral_at")
_REFERRAL_SET = ",\n        ".join(f"{c} = CASE WHEN {_TAKE} THEN EXCLUDED.{c} ELSE l.{c} END"
                                   for c in _REFERRAL_COLUMNS)
AD_DIRECTION = """(SELECT ad.id FROM account_directions ad
     WHERE ad.account_id = {account} AND {ad_id} = ANY (ad.ad_ids) ORDER BY ad.id LIMIT 1)"""

LEAD_CONFLICT = f"""ON CONFLICT (instance_name, phone) DO UPDATE SET
    push_name = COALESCE(EXCLUDED.push_name, l.push_name),
    email = COALESCE(l.email, EXCLUDED.email),
    {_REFERRAL_SET},
    direction_id = CASE
        WHEN {_TAKE} AND EXISTS {AD_DIRECTION.format(account="l.account_id", ad_id="EXCLUDED.ad_source_id")}
        THEN EXCLUDED.direction_id
        ELSE COALESCE(l.direction_id, EXCLUDED.direction_id) END,
    updated_at = now()"""
