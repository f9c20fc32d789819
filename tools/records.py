"""Demo systems of record for insurance claims and logistics, with their seed data.

Claims: first notices of loss (FNOL: the claimant's free text plus the extracted text of attachments),
the insurance policies they name, and the reserves set on claims. Logistics: shipping customers,
shipments, carrier scan events, customer e-mails, rebooking quotes, and the effects written by agents
(customer notifications, shipping credits, rebookings).

Tables live on ``BusinessBase``, so ``BusinessStore.create_schema()`` creates them once this module is
imported; ``tools.business`` does not import this module (the arrow points one way). ``seed_records`` is
idempotent: it inserts the tenant's rows that are missing and keeps existing ones (and what agents changed).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from countersign.db import utcnow
from tools.business import BusinessBase, BusinessStore, scoped_fk

# --- Claims -------------------------------------------------------------------------------------------------


class InsurancePolicy(BusinessBase):
    """An insurance policy: what it covers, when, and for how much."""

    __tablename__ = "insurance_policies"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # the policy number, e.g. HO-100201
    holder: Mapped[str] = mapped_column(String(200))
    line: Mapped[str] = mapped_column(String(20))  # home / auto / commercial
    coverages: Mapped[list[str]]
    effective_from: Mapped[dt.date]
    effective_to: Mapped[dt.date]
    status: Mapped[str] = mapped_column(String(20))  # active / lapsed / cancelled / expired
    terminated_on: Mapped[dt.date | None]  # lapse or cancellation date, if any
    deductible: Mapped[float]
    coverage_limit: Mapped[float]
    currency: Mapped[str] = mapped_column(String(3), default="USD")


class Fnol(BusinessBase):
    """A first notice of loss as received; the triage fields are filled when it is routed or flagged."""

    __tablename__ = "fnols"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)  # the claim id, e.g. FNOL-2001
    reported_at: Mapped[dt.datetime]
    channel: Mapped[str] = mapped_column(String(20))  # phone / web / email / broker
    reporter: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]]  # [{"name", "kind", "text"}]: text extracted from each file
    status: Mapped[str] = mapped_column(String(20), default="new")  # new / routed / flagged
    queue: Mapped[str | None] = mapped_column(String(40))
    severity: Mapped[str | None] = mapped_column(String(10))
    flag_reason: Mapped[str | None] = mapped_column(Text)
    reserve_amount: Mapped[float | None]
    triaged_at: Mapped[dt.datetime | None]


class ClaimReserve(BusinessBase):
    """A reserve transaction on a claim: one row per effect, keyed by its idempotency key."""

    __tablename__ = "claim_reserves"
    __table_args__ = (scoped_fk("claim_id", "fnols"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    claim_id: Mapped[str] = mapped_column(String(36), index=True)
    amount: Mapped[float]
    injuries: Mapped[bool]
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- Logistics ----------------------------------------------------------------------------------------------


class ShippingCustomer(BusinessBase):
    """A business customer of the logistics provider."""

    __tablename__ = "shipping_customers"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    contact: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(200))


class Shipment(BusinessBase):
    """A shipment: who carries it where, and by when it was promised."""

    __tablename__ = "shipments"
    __table_args__ = (scoped_fk("customer_id", "shipping_customers"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    reference: Mapped[str] = mapped_column(String(60))  # the customer's purchase order or reference
    carrier: Mapped[str] = mapped_column(String(100))
    service: Mapped[str] = mapped_column(String(60))
    origin: Mapped[str] = mapped_column(String(120))
    destination: Mapped[str] = mapped_column(String(120))
    shipped_at: Mapped[dt.datetime]
    promised_date: Mapped[dt.date]
    status: Mapped[str] = mapped_column(String(20))  # in_transit / delayed / held / delivered / rebooked
    shipping_cost: Mapped[float]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    last_notified_at: Mapped[dt.datetime | None]


class ShipmentEvent(BusinessBase):
    """A carrier scan event; exception events may carry a new ETA (none means the ETA is unknown)."""

    __tablename__ = "shipment_events"
    __table_args__ = (scoped_fk("shipment_id", "shipments"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(30), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(36), index=True)
    at: Mapped[dt.datetime]
    code: Mapped[str] = mapped_column(String(30))
    location: Mapped[str] = mapped_column(String(120))
    detail: Mapped[str] = mapped_column(Text)
    new_eta: Mapped[dt.date | None]


class CustomerEmail(BusinessBase):
    """An e-mail from the customer about a shipment."""

    __tablename__ = "customer_emails"
    __table_args__ = (scoped_fk("shipment_id", "shipments"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(30), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(36), index=True)
    sender: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[dt.datetime]
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)


class RebookingOption(BusinessBase):
    """A carrier's quote to move a shipment on another service: its ETA and what it costs on top."""

    __tablename__ = "rebooking_options"
    __table_args__ = (scoped_fk("shipment_id", "shipments"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(30), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(36), index=True)
    carrier: Mapped[str] = mapped_column(String(100))
    service: Mapped[str] = mapped_column(String(60))
    eta: Mapped[dt.date]
    extra_cost: Mapped[float]


class CustomerNotification(BusinessBase):
    """A message sent to a customer about a shipment; one row per effect."""

    __tablename__ = "customer_notifications"
    __table_args__ = (scoped_fk("shipment_id", "shipments"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(36), index=True)
    to_email: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ShippingCredit(BusinessBase):
    """A credit on the customer's account for a shipping failure; one row per effect."""

    __tablename__ = "shipping_credits"
    __table_args__ = (
        scoped_fk("shipment_id", "shipments"),
        scoped_fk("customer_id", "shipping_customers"),
    )
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(36), index=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    amount: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ShipmentRebooking(BusinessBase):
    """A shipment moved onto another carrier's service; one row per effect."""

    __tablename__ = "shipment_rebookings"
    __table_args__ = (scoped_fk("shipment_id", "shipments"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    shipment_id: Mapped[str] = mapped_column(String(36), index=True)
    from_carrier: Mapped[str] = mapped_column(String(100))
    carrier: Mapped[str] = mapped_column(String(100))
    service: Mapped[str] = mapped_column(String(60))
    extra_cost: Mapped[float]
    new_eta: Mapped[dt.date]
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# --- Seed data ----------------------------------------------------------------------------------------------
# The tables below are kept one row per line (or per few lines) for reading: the formatter leaves them alone.

HOME = ["fire", "water_damage", "theft", "storm", "vandalism"]
AUTO = ["collision", "glass", "theft", "vandalism", "storm", "liability"]
COMMERCIAL = ["fire", "water_damage", "theft", "storm", "vandalism"]


def _d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _t(text: str) -> dt.datetime:
    """An ISO timestamp in UTC, e.g. ``2026-10-14T08:30``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _att(name: str, kind: str, text: str) -> dict[str, Any]:
    return {"name": name, "kind": kind, "text": text}


# fmt: off
# number, holder, line, coverages, from, to, status, terminated_on, deductible, limit
_POLICIES: list[tuple[str, str, str, list[str], str, str, str, str | None, float, float]] = [
    ("HO-100201", "Maria Chen", "home", HOME, "2026-03-01", "2027-02-28", "active", None, 500, 350_000),
    ("HO-100202", "James O'Neill", "home", HOME, "2025-11-15", "2026-11-14", "active", None, 1000, 420_000),
    ("HO-100203", "Priya Raman", "home", HOME, "2025-06-01", "2026-05-31", "expired", None, 500, 300_000),
    ("HO-100204", "Tomás Alvarez", "home", HOME, "2026-01-01", "2026-12-31", "lapsed", "2026-09-01", 500,
     250_000),
    ("HO-100205", "Beatrice Okoro", "home", HOME, "2026-02-01", "2027-01-31", "active", None, 1000, 500_000),
    ("HO-100206", "Liam Becker", "home", HOME, "2026-04-01", "2027-03-31", "active", None, 1000, 280_000),
    ("HO-100207", "Ruth Delgado", "home", HOME, "2026-01-15", "2027-01-14", "active", None, 1000, 390_000),
    ("HO-100208", "Noah Fischer", "home", HOME, "2026-10-15", "2027-10-14", "active", None, 500, 310_000),
    ("HO-100209", "Amara Singh", "home", HOME, "2026-05-01", "2027-04-30", "active", None, 500, 260_000),
    ("HO-100210", "Oliver Grant", "home", HOME, "2026-01-01", "2026-12-31", "cancelled", "2026-10-20", 500,
     300_000),
    ("HO-100211", "Hannah Kowalski", "home", HOME, "2026-06-01", "2027-05-31", "active", None, 500, 450_000),
    ("HO-100212", "Samuel Adeyemi", "home", HOME, "2026-07-01", "2027-06-30", "active", None, 250, 220_000),
    ("HO-100213", "Elena Petrova", "home", [*HOME, "flood"], "2026-03-01", "2027-02-28", "active", None, 1000,
     600_000),
    ("AU-200301", "Daniel Okafor", "auto", AUTO, "2026-01-10", "2027-01-09", "active", None, 750, 60_000),
    ("AU-200302", "Sofia Rossi", "auto", ["liability"], "2026-02-20", "2027-02-19", "active", None, 0,
     100_000),
    ("AU-200303", "Kevin Walsh", "auto", AUTO, "2026-03-01", "2027-02-28", "cancelled", "2026-07-15", 500,
     50_000),
    ("AU-200304", "Grace Mbeki", "auto", AUTO, "2026-05-05", "2027-05-04", "active", None, 500, 75_000),
    ("AU-200305", "Marco Bianchi", "auto", AUTO, "2026-06-12", "2027-06-11", "active", None, 750, 45_000),
    ("AU-200306", "Yuki Tanaka", "auto", AUTO, "2026-04-01", "2027-03-31", "active", None, 500, 55_000),
    ("AU-200307", "Peter Lindqvist", "auto", AUTO, "2026-01-01", "2026-12-31", "active", None, 1000, 80_000),
    ("CP-300401", "Northwind Bakery LLC", "commercial", COMMERCIAL, "2026-01-01", "2026-12-31", "active",
     None, 2500, 2_000_000),
    ("CP-300402", "Copperleaf Books Inc", "commercial", COMMERCIAL, "2026-03-15", "2027-03-14", "active",
     None, 2500, 750_000),
]

# id, reported_at, channel, reporter, description, attachments (each with the text extracted from the file)
_FNOLS: list[tuple[str, str, str, str, str, list[dict[str, Any]]]] = [
    ("FNOL-2001", "2026-10-15T08:12", "web", "Maria Chen",
     "Policy HO-100201. On October 14, 2026 a pipe burst under the upstairs bathroom sink while I was at "
     "work. Water came through the kitchen ceiling and soaked the floor. A plumber fixed the pipe the same "
     "evening. No one was hurt. The contractor's repair estimate is attached.",
     [_att("estimate_dryright.pdf", "estimate",
           "DryRight Restoration - Estimate 8812\nCustomer: Maria Chen\nDate of loss: 2026-10-14\n"
           "Ceiling drywall replacement 2,150.00\nFlooring (kitchen, 18 m2) 2,900.00\n"
           "Drying equipment 3 days 1,150.00\nTotal: $6,200.00"),
      _att("photo_ceiling.jpg", "photo",
           "Photo: water-stained kitchen ceiling, partially collapsed drywall.")]),
    ("FNOL-2002", "2026-10-10T07:40", "phone", "James O'Neill",
     "Kitchen fire on 2026-10-09 around 7pm, started at the stove. Fire department came and put it out. "
     "Everyone got out safely and nobody was hurt. Kitchen destroyed, smoke damage through the ground "
     "floor. Policy number HO-100202.",
     [_att("fire_report.pdf", "report",
           "Fire Department Incident Report 26-4471\nIncident date: 2026-10-09\n"
           "Cause: unattended cooking.\nInjuries: none. Occupants evacuated before arrival."),
      _att("contractor_estimate.pdf", "estimate",
           "Ashford Builders - Fire restoration estimate\nDemolition and debris 6,800\n"
           "Kitchen rebuild 21,400\nSmoke remediation 10,300\nTotal estimate: $38,500")]),
    ("FNOL-2003", "2026-10-21T16:05", "phone", "Daniel Okafor",
     "I was rear-ended at a red light on Elm Street on October 20, 2026. My policy is AU-200301. "
     "The other driver admitted fault. I have whiplash and went to urgent care the same night. "
     "Body shop estimate attached.",
     [_att("bodyshop_quote.pdf", "estimate",
           "Precision Auto Body\nVehicle: 2021 Honda Civic\nRear bumper, trunk lid, tail lights\n"
           "Parts 4,900.00 Labour 3,500.00\nTotal: $8,400.00"),
      _att("urgent_care_note.pdf", "medical",
           "Patient seen 2026-10-20 for neck pain after a rear-end collision. "
           "Diagnosis: cervical strain.")]),
    ("FNOL-2004", "2026-10-06T10:30", "web", "Tomás Alvarez",
     "Break-in at my house on 2026-10-05. Someone forced the back door and stole a laptop, a TV and "
     "jewellery. Police report filed. Policy HO-100204. Estimated loss about $2,300. No one was home, "
     "nobody hurt.",
     [_att("police_report.pdf", "report",
           "Police report 2026-118842. Date of loss: 2026-10-05. Residential burglary, rear door "
           "forced. Items reported: laptop, 55in TV, jewellery.")]),
    ("FNOL-2005", "2026-10-18T12:00", "phone", "Sofia Rossi",
     "Slid on wet leaves and hit a lamp post on 2026-10-17. Only my car was damaged, nobody else involved "
     "and no injuries. Policy AU-200302. The garage quoted $5,900 for the front end.",
     [_att("garage_quote.pdf", "estimate",
           "Via Motors quote: bumper, radiator, headlight. Total: $5,900.00")]),
    ("FNOL-2006", "2026-10-19T09:15", "web", "Beatrice Okoro",
     "Storm on October 18, 2026 tore shingles off the roof and rain came into the attic. "
     "Policy HO-100205. No one was injured. A roofer is coming on Friday to give an estimate, I do not "
     "know the cost yet.",
     [_att("photo_roof.jpg", "photo", "Photo: missing shingles on the north slope of the roof.")]),
    ("FNOL-2007", "2026-10-23T18:45", "broker", "Grace Mbeki (via broker Lane & Co)",
     "Collision at the junction of 5th and Main on 2026-10-22. Insured's policy AU-200304. Insured says "
     "nobody was hurt. Repair estimate $4,100.",
     [_att("police_report.pdf", "report",
           "Collision report 2026-77120. Two vehicles. Passenger of vehicle 2 transported by ambulance "
           "complaining of neck pain."),
      _att("repair_estimate.pdf", "estimate", "Eastside Collision Centre. Total: $4,100.00")]),
    ("FNOL-2008", "2026-10-12T11:20", "phone", "Liam Becker",
     "Washing machine hose split on 2026-10-11 and flooded the laundry room and hallway. "
     "Policy HO-100206. I think it is maybe $1,500 of damage. No injuries.",
     [_att("contractor_estimate.pdf", "estimate",
           "AquaFix Restoration\nDate of loss: 2026-10-11\nSubfloor replacement, drywall 1.2m, "
           "cabinets, mould prevention\nTotal: $12,850.00")]),
    ("FNOL-2009", "2026-10-13T08:00", "phone", "Ruth Delgado",
     "The river overflowed after three days of rain and flooded our basement on 2026-10-12, water was "
     "60 cm deep. Policy HO-100207. Furnace and washer ruined. We estimate $22,000. Nobody was hurt.",
     []),
    ("FNOL-2010", "2026-10-16T14:10", "web", "Noah Fischer",
     "Policy HO-100208. Tree branch fell through the living room window during a storm on "
     "October 10, 2026. Glazier estimate $1,950. No one was injured.",
     [_att("glazier_quote.pdf", "estimate",
           "ClearView Glass. Window replacement, living room. Total: $1,950")]),
    ("FNOL-2011", "2026-10-03T09:40", "email", "Priya Raman",
     "Hail storm on 2026-10-02 cracked two skylights and dented the gutters. Policy HO-100203. "
     "Estimated repair $3,400. No injuries.",
     []),
    ("FNOL-2012", "2026-10-24T07:55", "web", "Daniel Okafor",
     "A stone from a truck cracked my windshield on the highway on October 23, 2026. Policy AU-200301. "
     "Nobody hurt. Windshield replacement quote: $480.",
     [_att("glass_quote.pdf", "estimate", "Brightpane Glass Co. Windshield replacement. Total: $480.00")]),
    ("FNOL-2013", "2026-10-26T20:30", "phone", "Marco Bianchi",
     "My car was broken into overnight on 2026-10-25 in a parking garage: window smashed, laptop and "
     "stereo stolen. Policy AU-200305. Police report filed. Total loss about $1,850. No one was injured.",
     [_att("police_report.pdf", "report",
           "Police report 2026-131007. Vehicle break-in, theft of contents.")]),
    ("FNOL-2014", "2026-10-08T06:20", "broker", "Northwind Bakery LLC (via broker Lane & Co)",
     "Oven fire in the production area of the bakery on 2026-10-07. Policy CP-300401. One employee was "
     "treated for burns to the hand at the hospital. Production line and ceiling destroyed.",
     [_att("loss_adjuster_prelim.pdf", "estimate",
           "Preliminary loss assessment, Northwind Bakery\nDate of loss: 2026-10-07\nEquipment 112,000\n"
           "Building 58,000\nStock 15,000\nTotal: $185,000")]),
    ("FNOL-2015", "2026-10-27T09:00", "email", "Copperleaf Books Inc",
     "Burglary at our store on the night of 2026-10-26: front door forced, cash register and rare books "
     "stolen. Policy CP-300402. Store was closed, no one was hurt. Inventory loss estimate attached.",
     [_att("inventory_loss.xlsx", "invoice",
           "Stolen inventory (at cost): rare books 12,400; register and cash 1,800. Total: $14,200")]),
    ("FNOL-2016", "2026-10-28T15:30", "phone", "Walter Brooks",
     "My basement flooded from a burst water heater on 2026-10-27. I do not have my policy number with "
     "me. Damage is around $3,000. Nobody hurt.",
     []),
    ("FNOL-2017", "2026-10-29T10:10", "web", "Irene Novak",
     "Fire in the garage on October 28, 2026, from a faulty extension cord. Policy HO-199999. "
     "Estimate $7,400. No injuries.",
     []),
    ("FNOL-2018", "2026-10-30T08:25", "web", "Amara Singh",
     "Vandals spray-painted graffiti on our garage door and fence on 2026-10-29. Policy HO-100209. "
     "Painter quoted $950. Nobody was hurt.",
     [_att("painter_quote.pdf", "estimate",
           "Brushworks Painting. Graffiti removal and repaint. Total: $950")]),
    ("FNOL-2019", "2026-10-20T13:00", "phone", "Yuki Tanaka",
     "Hail storm on 2026-10-19 dented the roof and bonnet of my car while parked outside. "
     "Policy AU-200306. No injuries. Dent repair quote $3,700; I know my deductible is $500.",
     [_att("pdr_quote.pdf", "estimate", "Paintless dent repair. 48 dents. Total: $3,700.00")]),
    ("FNOL-2020", "2026-10-21T11:45", "email", "Oliver Grant",
     "A pipe leaked behind the dishwasher and damaged the kitchen floor. It happened on 2026-10-11, I "
     "only found it now. Policy HO-100210. Flooring estimate attached. No one injured.",
     [_att("flooring_estimate.pdf", "estimate",
           "Oak & Tile Co. Kitchen floor replacement. Total: $3,050.00")]),
    ("FNOL-2021", "2026-10-30T17:00", "phone", "Hannah Kowalski",
     "Someone broke into our shed sometime last week while we were away and stole two bicycles and "
     "tools. Policy HO-100211. Value about $2,100. No injuries.",
     []),
    ("FNOL-2022", "2026-10-19T07:30", "phone", "Elena Petrova",
     "During the storm on October 18, 2026 a large oak fell onto the house and broke through the roof "
     "of two bedrooms. Policy HO-100213. Nobody was hurt, we were downstairs. Emergency roofer "
     "estimates $27,400 for tree removal, roof and ceiling repairs.",
     []),
    ("FNOL-2023", "2026-10-25T19:20", "web", "Peter Lindqvist",
     "Low-speed collision in a supermarket car park on 2026-10-24: I reversed into another car. I was "
     "alone and not injured. Policy AU-200307. Estimated damage to my car $6,900.",
     [_att("witness_statement.pdf", "statement",
           "Witness: the other driver complained of back pain at the scene and said she would see "
           "her doctor."),
      _att("repair_estimate.pdf", "estimate",
           "Lindholm Garage. Rear bumper, sensors, tailgate. Total: $6,900")]),
    ("FNOL-2024", "2026-10-31T09:50", "web", "Hannah Kowalski",
     "Burglary at home on 2026-10-30: back window smashed, jewellery and a camera taken. "
     "Policy HO-100211. Police report attached. Nobody was home and no one was hurt.",
     [_att("police_report.pdf", "report", "Police report 2026-140221. Date of loss: 2026-10-30. Burglary."),
      _att("valuation.pdf", "invoice", "Jewellery valuation 7,600; camera 2,200. Total: $9,800")]),
    ("FNOL-2025", "2026-10-22T21:10", "phone", "Samuel Adeyemi",
     "Grease fire on the stove on 2026-10-22, put out with an extinguisher. Smoke damage to the kitchen "
     "cabinets and ceiling. Policy HO-100212. Cleaning and repainting quote $2,600. Nobody was hurt.",
     []),
    ("FNOL-2026", "2026-10-14T12:40", "phone", "Kevin Walsh",
     "Collision on the motorway on 2026-10-13, another car changed lanes into mine. Policy AU-200303. "
     "No injuries. Repair estimate $5,200.",
     []),
    ("FNOL-2027", "2026-11-02T08:05", "email", "Priya Raman",
     "Date of loss: 2026-11-01. Upstairs toilet overflowed overnight and water came through two "
     "ceilings. Policy HO-100206 (my partner Liam Becker's policy, I live there). Contractor estimate: "
     "$18.5k. No one injured.",
     []),
    ("FNOL-2028", "2026-10-05T10:00", "web", "Amara Singh",
     "Kitchen tap leaked into the cabinet below on 2026-10-04. Policy HO-100209. Cabinet repair $780. "
     "No injuries.",
     []),
]

# Claims already triaged before the demo starts: id -> (status, queue, severity, reserve)
_TRIAGED: dict[str, tuple[str, str, str, float]] = {"FNOL-2028": ("routed", "fast_track", "low", 280.0)}

_SHIPPING_CUSTOMERS = [
    ("SC-401", "Brightline Medical Supply", "Dana Whitfield", "orders@brightline-medical.example"),
    ("SC-402", "Kestrel Robotics", "Arjun Mehta", "supply@kestrel-robotics.example"),
    ("SC-403", "Harbor & Pine Furniture", "Claire Dubois", "logistics@harborpine.example"),
    ("SC-404", "Lumen Events Ltd", "Tobias Reed", "ops@lumen-events.example"),
    ("SC-405", "Greenfield Grocers", "Maya Lopez", "purchasing@greenfield-grocers.example"),
    ("SC-406", "Atlas Auto Parts", "Viktor Ilić", "inbound@atlas-autoparts.example"),
    ("SC-407", "Novak Textiles", "Jana Novak", "jana@novak-textiles.example"),
    ("SC-408", "Ridgeway Pharmacy", "Samir Haddad", "store@ridgeway-pharmacy.example"),
]

# id, customer, reference, carrier, service, origin, destination, shipped_at, promised, status, cost,
# last notified at
_SHIPMENTS: list[tuple[str, str, str, str, str, str, str, str, str, str, float, str | None]] = [
    ("SH-3001", "SC-402", "PO-88120", "Ridgeline Freight", "LTL standard", "Chicago, IL", "Denver, CO",
     "2026-10-29T15:00", "2026-11-03", "delayed", 640.0, None),
    ("SH-3002", "SC-401", "PO-55301", "Ridgeline Freight", "LTL standard", "Columbus, OH", "Atlanta, GA",
     "2026-10-30T14:00", "2026-11-04", "in_transit", 410.0, None),
    ("SH-3003", "SC-403", "HP-2231", "Coastal Parcel", "Ground", "Portland, OR", "Sacramento, CA",
     "2026-10-27T10:00", "2026-10-30", "delivered", 95.0, None),
    ("SH-3004", "SC-404", "LE-7781", "Coastal Parcel", "2-day", "Austin, TX", "Nashville, TN",
     "2026-10-30T09:00", "2026-11-01", "delayed", 180.0, None),
    ("SH-3005", "SC-407", "NT-5520", "BlueWave Ocean", "FCL 40ft", "Izmir, TR", "Newark, NJ",
     "2026-10-05T08:00", "2026-10-31", "held", 4200.0, None),
    ("SH-3006", "SC-406", "AAP-9914", "BlueWave Ocean", "LCL", "Busan, KR", "Long Beach, CA",
     "2026-10-08T02:00", "2026-10-29", "held", 1850.0, None),
    ("SH-3007", "SC-403", "HP-2240", "Ridgeline Freight", "LTL standard", "Grand Rapids, MI", "Boston, MA",
     "2026-10-20T13:00", "2026-10-24", "delivered", 520.0, None),
    ("SH-3008", "SC-401", "PO-55322", "Ridgeline Freight", "FTL", "Memphis, TN", "Phoenix, AZ",
     "2026-10-28T18:00", "2026-11-01", "delayed", 2900.0, None),
    ("SH-3009", "SC-406", "AAP-9920", "Coastal Parcel", "Ground", "Detroit, MI", "Dallas, TX",
     "2026-10-27T11:00", "2026-10-31", "delayed", 150.0, None),
    ("SH-3010", "SC-402", "PO-88133", "Ridgeline Freight", "LTL standard", "Chicago, IL", "Minneapolis, MN",
     "2026-10-28T16:00", "2026-10-31", "delivered", 380.0, None),
    ("SH-3011", "SC-404", "LE-7790", "Coastal Parcel", "Ground", "Los Angeles, CA", "Las Vegas, NV",
     "2026-10-26T12:00", "2026-10-29", "delayed", 120.0, None),
    ("SH-3012", "SC-407", "NT-5531", "Ridgeline Freight", "LTL standard", "Charlotte, NC", "Baltimore, MD",
     "2026-10-24T10:00", "2026-10-28", "delayed", 460.0, "2026-10-29T15:20"),
    ("SH-3013", "SC-408", "RP-1102", "Coastal Parcel", "Ground", "Louisville, KY", "Cincinnati, OH",
     "2026-10-29T09:00", "2026-10-31", "held", 60.0, None),
    ("SH-3014", "SC-405", "GG-3317", "ColdChain Express", "Reefer FTL", "Salinas, CA", "Seattle, WA",
     "2026-10-30T05:00", "2026-11-01", "delayed", 3100.0, None),
    ("SH-3015", "SC-403", "HP-2255", "BlueWave Ocean", "FCL 20ft", "Ho Chi Minh City, VN", "Oakland, CA",
     "2026-09-30T04:00", "2026-10-24", "delayed", 2600.0, None),
    ("SH-3016", "SC-402", "PO-88140", "Ridgeline Freight", "LTL standard", "Pittsburgh, PA",
     "Kansas City, MO", "2026-10-26T14:00", "2026-10-30", "delayed", 550.0, None),
    ("SH-3017", "SC-405", "GG-3321", "ColdChain Express", "Reefer LTL", "Fresno, CA", "Reno, NV",
     "2026-11-01T04:00", "2026-11-03", "in_transit", 700.0, None),
    ("SH-3018", "SC-408", "RP-1108", "Coastal Parcel", "2-day", "Indianapolis, IN", "St. Louis, MO",
     "2026-10-27T09:00", "2026-10-29", "delivered", 45.0, None),
    ("SH-3019", "SC-407", "NT-5540", "SkyBridge Air Cargo", "Air standard", "Milan, IT", "New York, NY",
     "2026-10-23T20:00", "2026-10-27", "delivered", 1350.0, None),
    ("SH-3020", "SC-406", "AAP-9931", "Ridgeline Freight", "FTL", "Toledo, OH", "Houston, TX",
     "2026-10-27T07:00", "2026-10-30", "delayed", 2400.0, None),
    ("SH-3021", "SC-401", "PO-55340", "Coastal Parcel", "Ground", "Reno, NV", "Boise, ID",
     "2026-10-26T10:00", "2026-10-30", "delivered", 85.0, None),
    ("SH-3022", "SC-404", "LE-7802", "Ridgeline Freight", "FTL", "Orlando, FL", "Seattle, WA",
     "2026-10-22T08:00", "2026-10-28", "delayed", 3800.0, None),
    ("SH-3023", "SC-408", "RP-1115", "Coastal Parcel", "Ground", "Louisville, KY", "Lexington, KY",
     "2026-11-01T16:00", "2026-11-04", "in_transit", 40.0, None),
    ("SH-3024", "SC-403", "HP-2262", "Ridgeline Freight", "LTL standard", "Raleigh, NC", "Miami, FL",
     "2026-10-23T12:00", "2026-10-27", "delivered", 610.0, None),
    ("SH-3025", "SC-406", "AAP-9940", "BlueWave Ocean", "LCL", "Yokohama, JP", "Seattle, WA",
     "2026-10-06T03:00", "2026-10-30", "held", 1500.0, None),
    ("SH-3026", "SC-401", "PO-55351", "Coastal Parcel", "Ground", "Denver, CO", "Salt Lake City, UT",
     "2026-10-31T11:00", "2026-11-04", "in_transit", 110.0, None),
]

# shipment -> [(at, code, location, detail, new_eta)]
_EVENTS: dict[str, list[tuple[str, str, str, str, str | None]]] = {
    "SH-3001": [
        ("2026-10-29T15:00", "PICKED_UP", "Chicago, IL", "Picked up, 6 pallets.", None),
        ("2026-10-30T06:10", "DEPARTED", "Chicago, IL", "Departed terminal.", None),
        ("2026-10-31T09:30", "ARRIVED", "Omaha, NE", "Arrived at the Omaha cross-dock.", None),
        ("2026-11-01T07:45", "DELAY_WEATHER", "Omaha, NE",
         "I-80 closed westbound by a blizzard; linehaul held at Omaha until the road reopens.", "2026-11-08"),
    ],
    "SH-3002": [
        ("2026-10-30T14:00", "PICKED_UP", "Columbus, OH", "Picked up, 3 pallets.", None),
        ("2026-10-31T05:00", "DEPARTED", "Columbus, OH", "Departed terminal.", None),
        ("2026-11-01T11:20", "ARRIVED", "Knoxville, TN", "Arrived at hub, on schedule.", None),
    ],
    "SH-3003": [
        ("2026-10-27T10:00", "PICKED_UP", "Portland, OR", "Picked up.", None),
        ("2026-10-29T08:00", "OUT_FOR_DELIVERY", "Sacramento, CA", "Out for delivery.", None),
        ("2026-10-29T14:12", "DELIVERED", "Sacramento, CA", "Delivered, signed by C. DUBOIS.", None),
    ],
    "SH-3004": [
        ("2026-10-30T09:00", "PICKED_UP", "Austin, TX", "Picked up.", None),
        ("2026-10-31T02:30", "MISSED_CONNECTION", "Memphis, TN",
         "Parcel missed the outbound trailer at the Memphis hub; rerouted on the next linehaul.",
         "2026-11-03"),
    ],
    "SH-3005": [
        ("2026-10-05T08:00", "DEPARTED", "Izmir, TR", "Vessel MSC ARIA departed.", None),
        ("2026-10-29T06:00", "ARRIVED", "Newark, NJ", "Container discharged at Port Newark.", None),
        ("2026-10-30T13:00", "CUSTOMS_HOLD", "Newark, NJ",
         "CBP hold: commercial invoice and certificate of origin missing from the entry.", None),
    ],
    "SH-3006": [
        ("2026-10-08T02:00", "DEPARTED", "Busan, KR", "Vessel HMM OPAL departed.", None),
        ("2026-10-25T10:00", "ARRIVED", "Long Beach, CA", "Discharged at Long Beach.", None),
        ("2026-10-26T09:00", "CUSTOMS_HOLD", "Long Beach, CA", "CBP exam ordered (intensive exam).", None),
        ("2026-11-01T16:00", "CUSTOMS_CLEARED", "Long Beach, CA",
         "Exam complete, cargo released; drayage booked.", "2026-11-04"),
    ],
    "SH-3007": [
        ("2026-10-20T13:00", "PICKED_UP", "Grand Rapids, MI", "Picked up, 4 pallets.", None),
        ("2026-10-22T04:00", "DELAY_MECHANICAL", "Erie, PA",
         "Tractor breakdown; waiting for a replacement power unit.", "2026-10-28"),
        ("2026-10-29T10:40", "DELIVERED", "Boston, MA", "Delivered, signed by R. MOORE (dock 3).", None),
    ],
    "SH-3008": [
        ("2026-10-28T18:00", "PICKED_UP", "Memphis, TN", "Picked up, full truckload.", None),
        ("2026-10-30T03:00", "DELAY_MECHANICAL", "Amarillo, TX",
         "Engine fault; tractor at a repair shop, parts on order.", "2026-11-08"),
    ],
    "SH-3009": [
        ("2026-10-27T11:00", "PICKED_UP", "Detroit, MI", "Picked up.", None),
        ("2026-10-29T01:00", "MISSED_CONNECTION", "Indianapolis, IN", "Missed sort; parcel held at hub.",
         None),
        ("2026-10-30T07:00", "ETA_UPDATE", "Indianapolis, IN", "New delivery date scheduled.", "2026-11-04"),
    ],
    "SH-3010": [
        ("2026-10-28T16:00", "PICKED_UP", "Chicago, IL", "Picked up.", None),
        ("2026-10-29T06:00", "DELAY_WEATHER", "Madison, WI", "Heavy snow; linehaul slowed.", "2026-11-01"),
        ("2026-10-30T05:00", "ETA_UPDATE", "Eau Claire, WI", "Road reopened, back on schedule.",
         "2026-10-31"),
        ("2026-10-31T13:05", "DELIVERED", "Minneapolis, MN", "Delivered, signed by A. MEHTA.", None),
    ],
    "SH-3011": [
        ("2026-10-26T12:00", "PICKED_UP", "Los Angeles, CA", "Picked up.", None),
        ("2026-10-27T22:00", "DELAY_WEATHER", "Barstow, CA",
         "I-15 closed by a dust storm and a multi-vehicle accident.", "2026-11-01"),
    ],
    "SH-3012": [
        ("2026-10-24T10:00", "PICKED_UP", "Charlotte, NC", "Picked up.", None),
        ("2026-10-27T08:00", "DELAY_MECHANICAL", "Richmond, VA", "Trailer brake failure.", "2026-11-02"),
    ],
    "SH-3013": [
        ("2026-10-29T09:00", "PICKED_UP", "Louisville, KY", "Picked up.", None),
        ("2026-10-30T15:30", "ADDRESS_ISSUE", "Cincinnati, OH",
         "Delivery attempted: suite number missing, receiving dock not found. Held at station.", None),
    ],
    "SH-3014": [
        ("2026-10-30T05:00", "PICKED_UP", "Salinas, CA", "Loaded, reefer set to 2°C.", None),
        ("2026-10-31T20:00", "DELAY_WEATHER", "Siskiyou Pass, OR",
         "Chain controls and closure on I-5 over the Siskiyou pass.", "2026-11-02"),
    ],
    "SH-3015": [
        ("2026-09-30T04:00", "DEPARTED", "Ho Chi Minh City, VN", "Booked on CMA CGM LYRA.", None),
        ("2026-10-01T12:00", "CAPACITY_ROLLOVER", "Ho Chi Minh City, VN",
         "Vessel overbooked; container rolled to the next sailing (10 days later).", "2026-11-05"),
    ],
    "SH-3016": [
        ("2026-10-26T14:00", "PICKED_UP", "Pittsburgh, PA", "Picked up, 2 pallets.", None),
        ("2026-10-27T19:00", "DELAY_WEATHER", "Columbus, OH", "Ice storm; terminal closed for 24 hours.",
         "2026-11-01"),
        ("2026-10-29T03:00", "MISSED_CONNECTION", "St. Louis, MO", "Missed the Kansas City linehaul.",
         "2026-11-03"),
    ],
    "SH-3017": [
        ("2026-11-01T04:00", "PICKED_UP", "Fresno, CA", "Loaded, reefer set to 3°C.", None),
    ],
    "SH-3018": [
        ("2026-10-27T09:00", "PICKED_UP", "Indianapolis, IN", "Picked up.", None),
        ("2026-10-29T07:00", "MISSED_CONNECTION", "Effingham, IL", "Missed sort.", "2026-10-30"),
        ("2026-10-30T12:15", "DELIVERED", "St. Louis, MO", "Delivered, signed by S. HADDAD.", None),
    ],
    "SH-3019": [
        ("2026-10-23T20:00", "DEPARTED", "Milan, IT", "Flight departed MXP.", None),
        ("2026-10-24T09:00", "CUSTOMS_HOLD", "New York, NY", "Held for textile quota documentation.", None),
        ("2026-10-27T15:00", "CUSTOMS_CLEARED", "New York, NY", "Released by CBP.", "2026-10-29"),
        ("2026-10-29T11:30", "DELIVERED", "New York, NY", "Delivered, signed by J. NOVAK.", None),
    ],
    "SH-3020": [
        ("2026-10-27T07:00", "PICKED_UP", "Toledo, OH", "Picked up, full truckload.", None),
        ("2026-10-28T14:00", "DELAY_MECHANICAL", "Little Rock, AR", "Engine failure; tractor towed.",
         "2026-11-04"),
    ],
    "SH-3021": [
        ("2026-10-26T10:00", "PICKED_UP", "Reno, NV", "Picked up.", None),
        ("2026-10-29T09:50", "DELIVERED", "Boise, ID", "Delivered a day early.", None),
    ],
    "SH-3022": [
        ("2026-10-22T08:00", "PICKED_UP", "Orlando, FL", "Picked up, full truckload (stage equipment).",
         None),
        ("2026-10-24T11:00", "DELAY_MECHANICAL", "Amarillo, TX",
         "Transmission failure; load to be re-powered.", None),
        ("2026-10-26T09:00", "ETA_UPDATE", "Amarillo, TX", "Replacement tractor found; departing tomorrow.",
         "2026-11-09"),
    ],
    "SH-3023": [],
    "SH-3024": [
        ("2026-10-23T12:00", "PICKED_UP", "Raleigh, NC", "Picked up, 5 pallets.", None),
        ("2026-10-25T16:00", "MISSED_CONNECTION", "Jacksonville, FL", "Freight left behind on the dock.",
         "2026-11-01"),
        ("2026-11-02T10:00", "DELIVERED", "Miami, FL", "Delivered, signed by C. DUBOIS.", None),
    ],
    "SH-3025": [
        ("2026-10-06T03:00", "DEPARTED", "Yokohama, JP", "Vessel ONE HARMONY departed.", None),
        ("2026-10-28T07:00", "ARRIVED", "Seattle, WA", "Discharged at Terminal 18.", None),
        ("2026-10-29T12:00", "CUSTOMS_HOLD", "Seattle, WA",
         "Documentary review by CBP; broker expects release within 3 days.", "2026-11-01"),
    ],
    "SH-3026": [
        ("2026-10-31T11:00", "PICKED_UP", "Denver, CO", "Picked up.", None),
        ("2026-11-01T06:00", "DEPARTED", "Denver, CO", "Departed hub.", None),
    ],
}

# shipment -> [(received_at, subject, body)]; the sender is the customer's contact address
_EMAILS: dict[str, list[tuple[str, str, str]]] = {
    "SH-3001": [
        ("2026-11-01T10:02", "PO-88120 servo motors - where are they?",
         "Hi, tracking shows our servo motors stuck in Omaha. These are for the assembly cell we commission "
         "on November 5; without them our production line stops. Can you get them here faster? Arjun"),
    ],
    "SH-3002": [
        ("2026-10-31T12:00", "PO-55301 delivery window",
         "Please deliver between 8am and 2pm, our dock closes early on Wednesdays. Dana"),
    ],
    "SH-3003": [
        ("2026-10-30T09:10", "Re: HP-2231", "Received, thank you. Claire"),
    ],
    "SH-3004": [
        ("2026-10-31T16:40", "LE-7781 lighting rig",
         "Hello, is the lighting rig still arriving on Saturday? Please let me know. Tobias"),
    ],
    "SH-3005": [
        ("2026-10-31T09:15", "Container NT-5520",
         "Our forwarder says the container is in Newark. When will it be delivered? Jana Novak"),
    ],
    "SH-3006": [
        ("2026-10-27T08:30", "AAP-9914 brake components",
         "We are running low on stock for these brake pads. Any update on the exam? Viktor"),
        ("2026-11-01T18:10", "Re: AAP-9914 brake components",
         "Our customers have backorders waiting. If this drags on we will need some compensation for the "
         "delay. Viktor"),
    ],
    "SH-3007": [
        ("2026-10-25T11:00", "HP-2240 showroom delivery",
         "The showroom opening is on October 26 and the sofas are not here. This is urgent. Claire"),
    ],
    "SH-3008": [
        ("2026-10-31T07:20", "PO-55322 hospital supplies",
         "These are surgical drapes for Phoenix General; the hospital has surgeries scheduled next week. "
         "Please advise. Dana"),
    ],
    "SH-3009": [
        ("2026-10-30T15:00", "AAP-9920",
         "Tracking says Nov 4 now. These are replacement mirrors for a fleet customer; tell me if it slips "
         "again. Viktor"),
    ],
    "SH-3010": [
        ("2026-10-29T08:00", "PO-88133 snow", "Saw the snow warning. Will it still make Friday? Arjun"),
    ],
    "SH-3011": [
        ("2026-10-28T08:00", "LE-7790", "Saw the delay on tracking. Fine, just keep us posted. Tobias"),
    ],
    "SH-3012": [
        ("2026-10-28T09:00", "NT-5531", "Where is our fabric? Jana"),
        ("2026-10-29T16:00", "Re: NT-5531", "Thanks for the update, Monday works for us. Jana"),
    ],
    "SH-3013": [
        ("2026-10-31T08:45", "Missed delivery",
         "We were told delivery was attempted. We are at 415 Vine St, Suite 210, loading dock at the "
         "back. Samir"),
    ],
    "SH-3014": [
        ("2026-11-01T06:30", "GG-3317 produce",
         "This load is fresh produce for the weekend; each extra day on the road cuts shelf life and some "
         "of it will spoil. Maya"),
    ],
    "SH-3015": [
        ("2026-10-02T08:00", "HP-2255 rolled?",
         "Our forwarder says the container was rolled to the next vessel. Please confirm the new arrival "
         "date. Claire"),
        ("2026-10-20T10:00", "HP-2255 container",
         "Our spring collection is in that container. We can wait, but please keep us informed. Claire"),
    ],
    "SH-3017": [
        ("2026-11-01T07:00", "GG-3321", "Please keep the reefer at 3°C, the berries are sensitive. Maya"),
    ],
    "SH-3018": [
        ("2026-10-29T16:00", "RP-1108", "Our order did not arrive today as promised. Samir"),
    ],
    "SH-3019": [
        ("2026-10-26T10:00", "NT-5540 customs",
         "Our broker sent the quota certificate to CBP this morning. Jana"),
    ],
    "SH-3020": [
        ("2026-10-29T09:00", "AAP-9931",
         "Heard about the breakdown. The Houston warehouse can receive any day, Saturday included. Viktor"),
    ],
    "SH-3021": [
        ("2026-10-29T11:00", "PO-55340", "Arrived early, thanks! Dana"),
    ],
    "SH-3016": [
        ("2026-10-30T12:00", "PO-88140",
         "Two delays now. We need these gearboxes as soon as possible. Arjun"),
    ],
    "SH-3022": [
        ("2026-10-27T17:00", "LE-7802 stage equipment",
         "Our festival load-in is November 6 in Seattle. If the equipment is not there by then we will "
         "face contractual penalties. Tobias"),
    ],
    "SH-3024": [
        ("2026-10-30T09:00", "HP-2262 still not delivered",
         "This is the third time I ask. The store has been waiting a week. Please refund the shipping. "
         "Claire"),
    ],
    "SH-3025": [
        ("2026-10-30T08:00", "AAP-9940",
         "Our broker says CBP is reviewing the documents. Do you know more? Viktor"),
    ],
    "SH-3026": [
        ("2026-11-01T08:00", "PO-55351", "Just checking this is on track for Wednesday. Dana"),
    ],
}

# shipment -> [(carrier, service, eta, extra_cost)]
_OPTIONS: dict[str, list[tuple[str, str, str, float]]] = {
    "SH-3001": [
        ("SkyBridge Air Cargo", "Air next-flight-out from Omaha", "2026-11-04", 145.0),
        ("Ridgeline Freight", "Southern reroute via I-70", "2026-11-06", 60.0),
    ],
    "SH-3004": [("Coastal Parcel", "Next-day air from Memphis", "2026-11-02", 85.0)],
    "SH-3008": [("Summit Expedite", "Team-driver FTL", "2026-11-03", 380.0)],
    "SH-3009": [("Coastal Parcel", "Ground reschedule", "2026-11-05", 0.0)],
    "SH-3011": [("Coastal Parcel", "Ground via Bakersfield", "2026-11-02", 25.0)],
    "SH-3014": [("ColdChain Express", "Coastal route via US-101", "2026-11-02", 480.0)],
    "SH-3016": [("Prairie Express", "Direct LTL from St. Louis", "2026-11-01", 90.0)],
    "SH-3020": [("Summit Expedite", "Re-powered FTL", "2026-11-01", 200.0)],
    "SH-3022": [
        ("Summit Expedite", "Team-driver FTL", "2026-11-03", 650.0),
        ("Ridgeline Freight", "Relay FTL", "2026-11-05", 420.0),
    ],
}
# fmt: on


def _rows() -> list[tuple[type[BusinessBase], list[dict[str, Any]]]]:
    """Fresh keyword sets each call, by table in foreign-key order (ORM instances are built from them)."""
    policies = [
        {
            "id": n,
            "holder": h,
            "line": line,
            "coverages": list(c),
            "effective_from": _d(f),
            "effective_to": _d(t),
            "status": s,
            "terminated_on": _d(term) if term else None,
            "deductible": float(ded),
            "coverage_limit": float(lim),
        }
        for n, h, line, c, f, t, s, term, ded, lim in _POLICIES
    ]
    fnols = []
    for cid, at, channel, reporter, text, attachments in _FNOLS:
        row: dict[str, Any] = {
            "id": cid,
            "reported_at": _t(at),
            "channel": channel,
            "reporter": reporter,
            "description": text,
            "attachments": [dict(a) for a in attachments],
        }
        if cid in _TRIAGED:
            status, queue, severity, reserve = _TRIAGED[cid]
            row |= {
                "status": status,
                "queue": queue,
                "severity": severity,
                "reserve_amount": reserve,
                "triaged_at": _t(at) + dt.timedelta(hours=2),
            }
        fnols.append(row)
    customers = [{"id": i, "name": n, "contact": c, "email": e} for i, n, c, e in _SHIPPING_CUSTOMERS]
    shipments = [
        {
            "id": i,
            "customer_id": cu,
            "reference": ref,
            "carrier": ca,
            "service": sv,
            "origin": o,
            "destination": de,
            "shipped_at": _t(sh),
            "promised_date": _d(pr),
            "status": st,
            "shipping_cost": cost,
            "last_notified_at": _t(nt) if nt else None,
        }
        for i, cu, ref, ca, sv, o, de, sh, pr, st, cost, nt in _SHIPMENTS
    ]
    events = [
        {
            "id": f"EV-{sid[3:]}-{n:02d}",
            "shipment_id": sid,
            "at": _t(at),
            "code": code,
            "location": loc,
            "detail": detail,
            "new_eta": _d(eta) if eta else None,
        }
        for sid, evs in _EVENTS.items()
        for n, (at, code, loc, detail, eta) in enumerate(evs, start=1)
    ]
    senders = {i: e for i, _, _, e in _SHIPPING_CUSTOMERS}
    owner = {s[0]: s[1] for s in _SHIPMENTS}
    emails = [
        {
            "id": f"EM-{sid[3:]}-{n}",
            "shipment_id": sid,
            "sender": senders[owner[sid]],
            "received_at": _t(at),
            "subject": subject,
            "body": body,
        }
        for sid, mails in _EMAILS.items()
        for n, (at, subject, body) in enumerate(mails, start=1)
    ]
    options = [
        {
            "id": f"RO-{sid[3:]}-{chr(ord('A') + n)}",
            "shipment_id": sid,
            "carrier": c,
            "service": s,
            "eta": _d(eta),
            "extra_cost": cost,
        }
        for sid, opts in _OPTIONS.items()
        for n, (c, s, eta, cost) in enumerate(opts)
    ]
    return [
        (InsurancePolicy, policies),
        (Fnol, fnols),
        (ShippingCustomer, customers),
        (Shipment, shipments),
        (ShipmentEvent, events),
        (CustomerEmail, emails),
        (RebookingOption, options),
    ]


async def seed_records(store: BusinessStore, tenant_id: str) -> None:
    """Create the claims and logistics tables and insert the tenant's missing demo rows; existing rows are
    kept."""
    await store.insert_missing(tenant_id, _rows())
