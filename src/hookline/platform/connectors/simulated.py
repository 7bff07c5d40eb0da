"""A simulated POS for demos and tests: realistic restaurant orders from a seeded random.

Each poll opens a few new orders and moves earlier ones along (open -> completed, or an
item added while open), so consecutive polls produce ``pos.order.updated`` and
``pos.order.completed`` like a real till would. The same seed gives the same orders.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hookline.platform.pos_schema import (
    AddressItem,
    POSItem,
    POSLocationItem,
    POSPaymentItem,
    PushedOrder,
    TotalTaxItem,
)

# (product id, name, unit price incl. VAT, VAT rate %)
MENU: tuple[tuple[str, str, float, float], ...] = (
    ("p-espresso", "Espresso", 2.80, 6.0),
    ("p-cappuccino", "Cappuccino", 3.90, 6.0),
    ("p-croissant", "Croissant", 2.50, 6.0),
    ("p-croque", "Croque monsieur", 9.50, 6.0),
    ("p-salad", "Caesar salad", 14.00, 12.0),
    ("p-steak", "Steak frites", 24.50, 12.0),
    ("p-beer", "Draft beer 33cl", 4.20, 21.0),
    ("p-wine", "Glass of red wine", 6.50, 21.0),
    ("p-water", "Sparkling water", 3.20, 21.0),
)
LOCATIONS: tuple[POSLocationItem, ...] = (
    POSLocationItem(
        id="loc-grand-place",
        name="Grand-Place",
        timezone="Europe/Brussels",
        address=AddressItem(
            street="Grand-Place", number="12", city="Brussels", postal_code="1000", country="BE"
        ),
    ),
    POSLocationItem(
        id="loc-sablon",
        name="Sablon",
        timezone="Europe/Brussels",
        address=AddressItem(
            street="Rue des Minimes", number="3", city="Brussels", postal_code="1000", country="BE"
        ),
    ),
)
PAYMENT_METHODS = (("pm-card", "Card"), ("pm-cash", "Cash"), ("pm-mobile", "Mobile"))


@dataclass
class _Till:
    open_orders: dict[str, PushedOrder] = field(default_factory=dict)
    counter: int = 0


class SimulatedPos:
    """Implements :class:`hookline.platform.connectors.PosConnector`."""

    def __init__(
        self,
        seed: int = 42,
        *,
        new_per_poll: tuple[int, int] = (1, 3),
        close_probability: float = 0.6,
    ) -> None:
        self.random = random.Random(seed)
        self.new_per_poll = new_per_poll
        self.close_probability = close_probability
        self._tills: dict[uuid.UUID, _Till] = {}

    async def fetch_locations(self, connection_id: uuid.UUID) -> list[POSLocationItem]:
        return list(LOCATIONS)

    async def fetch_orders(
        self, connection_id: uuid.UUID, *, since: datetime | None, now: datetime
    ) -> list[PushedOrder]:
        till = self._tills.setdefault(connection_id, _Till())
        changed: list[PushedOrder] = []
        for order_id, order in list(till.open_orders.items()):
            roll = self.random.random()
            if roll < self.close_probability:
                changed.append(self.close(order, now))
                del till.open_orders[order_id]
            elif roll < self.close_probability + 0.2:
                till.open_orders[order_id] = self.add_item(order)
                changed.append(till.open_orders[order_id])
        for _ in range(self.random.randint(*self.new_per_poll)):
            order = self.new_order(connection_id, till, now)
            till.open_orders[order.id] = order
            changed.append(order)
        return changed

    # Building blocks, public so tests and the demo can script a precise story.

    def new_order(
        self, connection_id: uuid.UUID, till: _Till | None = None, now: datetime | None = None
    ) -> PushedOrder:
        till = till or self._tills.setdefault(connection_id, _Till())
        till.counter += 1
        now = now or datetime.now().astimezone()
        lines = [self._line(index) for index in range(self.random.randint(1, 4))]
        location = self.random.choice(LOCATIONS)
        number = f"{till.counter:05d}"
        order = PushedOrder(
            id=f"ord-{str(connection_id)[:8]}-{number}",
            order_number=number,
            creation_date=now - timedelta(minutes=self.random.randint(1, 40)),
            device_id=f"till-{self.random.randint(1, 3)}",
            total=0,
            tax_amount=0,
            mode=self.random.choice(["EAT_IN", "TAKEAWAY"]),
            source="POS",
            currency="EUR",
            country="BE",
            guests=self.random.randint(1, 6),
            customer_id=self.random.choice([None, None, f"cust-{self.random.randint(1, 99)}"]),
            location_id=location.id,
            payments=[],
            items=lines,
            status="open",
        )
        return _with_totals(order)

    def add_item(self, order: PushedOrder) -> PushedOrder:
        lines = [*order.items, self._line(len(order.items))]
        return _with_totals(order.model_copy(update={"items": lines}))

    def close(self, order: PushedOrder, now: datetime) -> PushedOrder:
        method_id, method_name = self.random.choice(PAYMENT_METHODS)
        tip = round(self.random.choice([0, 0, 1.0, 2.5]), 2)
        payment = POSPaymentItem(
            id=f"pay-{order.id}",
            payment_method_id=method_id,
            payment_method_name=method_name,
            total=order.total,
            tip=tip,
            status="Completed",
            currency="EUR",
            date=now,
            order_id=order.id,
        )
        return order.model_copy(
            update={
                "status": "completed",
                "closing_date": now,
                "payments": [payment],
                "total_tip": tip,
            }
        )

    def _line(self, index: int) -> POSItem:
        product_id, _name, price, rate = self.random.choice(MENU)
        quantity = float(self.random.randint(1, 3))
        total = round(price * quantity, 2)
        tax = round(total - total / (1 + rate / 100), 2)
        return POSItem(
            id=f"line-{index + 1}",
            type="product",
            quantity=quantity,
            unit_price=price,
            total=total,
            tax_amount=tax,
            tax_rate=rate,
            tax_id=f"vat-{rate:g}",
            product_id=product_id,
        )


def _with_totals(order: PushedOrder) -> PushedOrder:
    """Totals and the per-rate tax breakdown, always consistent with the lines."""
    by_rate: dict[float, tuple[float, float]] = {}
    for line in order.items:
        rate = line.tax_rate or 0.0
        total, tax = by_rate.get(rate, (0.0, 0.0))
        by_rate[rate] = (total + line.total, tax + line.tax_amount)
    taxes = [
        TotalTaxItem(
            tax_id=f"vat-{rate:g}", tax_rate=rate, tax_amount=round(tax, 2), total=round(total, 2)
        )
        for rate, (total, tax) in sorted(by_rate.items())
    ]
    return order.model_copy(
        update={
            "total": round(sum(line.total for line in order.items), 2),
            "tax_amount": round(sum(line.tax_amount for line in order.items), 2),
            "taxes": taxes,
        }
    )
