"""The shape of a POS order and location, as the contract defines them (POSOrderItem ...).

These models validate what connectors push or poll before anything is stored; the API reuses
them as its request and response bodies. ``status`` on an order is a hookline extension
(``open`` | ``completed`` | ``closed``); without it an order is closed once it has a
``closing_date``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Mode(StrEnum):
    EAT_IN = "EAT_IN"
    TAKEAWAY = "TAKEAWAY"
    DELIVERY = "DELIVERY"
    UNKNOWN = "UNKNOWN"


class Source(StrEnum):
    WEB = "WEB"
    MOBILE = "MOBILE"
    KIOSK = "KIOSK"
    POS = "POS"
    REMOTE_POS = "REMOTE_POS"
    JUSTEAT = "JUSTEAT"
    FOODORA = "FOODORA"
    UBEREATS = "UBEREATS"
    GLOVO = "GLOVO"
    DELIVEROO = "DELIVEROO"
    SMILEIN = "SMILEIN"
    UNKNOWN = "UNKNOWN"


class POSPaymentStatus(StrEnum):
    Pending = "Pending"
    Completed = "Completed"
    Canceled = "Canceled"
    Failed = "Failed"
    Unknown = "Unknown"
    Authorised = "Authorised"


class POSLineItemType(StrEnum):
    menu = "menu"
    product = "product"
    service = "service"
    general_discount = "general_discount"


class DiscountType(StrEnum):
    OFFERED = "OFFERED"
    UNKNOWN = "UNKNOWN"
    LOSS = "LOSS"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TotalTaxItem(_Model):
    tax_id: str | None = None
    tax_rate: float
    tax_amount: float
    total: float


class POSPaymentItem(_Model):
    id: str | None = None
    payment_method_id: str | None = None
    payment_method_name: str | None = None
    total: float
    tip: float | None = 0
    status: POSPaymentStatus | None = POSPaymentStatus.Unknown
    currency: str | None = None
    date: datetime | None = None
    invoice_ref: str | None = None
    order_id: str | None = None


class DiscountItem(_Model):
    name: str | None = None
    total: float
    type: DiscountType = DiscountType.UNKNOWN


class ModifierLine(_Model):
    modifier_id: str | None = None
    name: str
    modifier_group_id: str | None = None
    quantity: float | None = 1
    unit_price: float | None = 0
    total: float | None = 0


class POSItem(_Model):
    id: str = Field(max_length=200)
    type: POSLineItemType | None = None
    menu_id: str | None = None
    quantity: float
    unit_price: float
    total: float
    tax_amount: float
    tax_rate: float | None = None
    tax_id: str | None = None
    discounts: list[DiscountItem] | None = Field(default_factory=list)
    product_id: str | None = None
    accounting_category_id: str | None = None
    modifiers: list[ModifierLine] | None = Field(default_factory=list)


class POSOrderItem(_Model):
    id: str = Field(min_length=1, max_length=200)
    order_number: str | None = None
    creation_date: datetime
    closing_date: datetime | None = None
    service_date: datetime | None = None
    device_id: str | None = None
    total: float
    tax_amount: float
    total_discount: float | None = 0
    total_refund: float | None = 0
    total_tip: float | None = 0
    delivery_fee: float | None = 0
    mode: Mode | None = Mode.UNKNOWN
    source: Source | None = Source.UNKNOWN
    currency: str | None = None
    country: str | None = None
    loyalty: int | None = None
    customer_id: str | None = None
    location_id: str | None = Field(default=None, max_length=200)
    taxes: list[TotalTaxItem] | None = Field(default_factory=list)
    guests: int | None = None
    payments: list[POSPaymentItem]
    items: list[POSItem]
    invoice_id: str | None = None


class PushedOrder(POSOrderItem):
    """An order as a connector pushes it: the contract's fields plus hookline's ``status``."""

    status: Literal["open", "completed", "closed"] | None = None


class AddressItem(_Model):
    address_type: str | None = None
    name: str | None = None
    street: str | None = None
    number: str | None = None
    box: str | None = None
    city: str | None = None
    postal_code: str | None = None
    country: str | None = None


class POSLocationItem(_Model):
    id: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    timezone: str | None = None
    address: AddressItem | None = None
