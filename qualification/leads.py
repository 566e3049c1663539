"""The WhatsApp lead: the one module that holds `leads`'s SQL (a chat of an instance, its phone and click id).

It sits in `qualification`, the lowest package that reads leads (bot writes them, crm links CRM
contacts to them, capi is told a dialog's contact through `capi.hooks.DialogContacts`).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.jobs import Executor


@dataclass(frozen=True)
class LeadContact:
    ctwa_clid: str | None
    email: str | None
    is_lid: bool
    ad_source_id: str | None


async def lead_contact(db: Executor, lead_id: int) -> LeadContact | None:
    row = await db.fetchrow("SELECT ctwa_clid, email, is_lid, ad_source_id FROM leads WHERE id = $1", lead_id)
    return LeadContact(row["ctwa_clid"], row["email"], row["is_lid"], row["ad_source_id"]) if row else None
