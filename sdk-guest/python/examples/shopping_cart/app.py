"""Example event-sourced entity: the canonical shopping cart. ``add-item`` adds a quantity of a
product (to the existing line if the product is already in the cart), ``remove-item`` removes a
product's line, and ``get-cart`` replies the lines in the order they were first added. Its
events are published to the topic ``cart-events``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import cella
from cella import EventContext, int64, json_name, reject


@dataclass
class LineItem:
    """One line of the cart."""

    product_id: Annotated[str, json_name("productId")]
    name: str
    quantity: int64


@dataclass
class RemoveItem:
    """The payload of ``remove-item``."""

    product_id: Annotated[str, json_name("productId")]


@dataclass
class ItemAdded:
    """Event ``{"itemAdded": {"item": LINE}}``."""

    item: LineItem


@dataclass
class ItemRemoved:
    """Event ``{"itemRemoved": {"productId": S}}``."""

    product_id: Annotated[str, json_name("productId")]


@dataclass
class ShoppingCart(cella.EventSourcedEntity):
    """The cart: its lines in insertion order."""

    items: list[LineItem] = field(default_factory=list)

    event_types = (ItemAdded, ItemRemoved)
    events_topic = "cart-events"

    def line(self, product_id: str) -> LineItem | None:
        return next((item for item in self.items if item.product_id == product_id), None)

    @cella.command
    def add_item(self, item: LineItem, ctx: EventContext) -> dict[str, Any]:
        if item.quantity <= 0:
            reject(f"Quantity for item {item.product_id} must be greater than zero.")
        line = self.line(item.product_id)
        in_cart = line.quantity if line is not None else 0
        if in_cart + item.quantity > cella.INT64_MAX:
            reject(f"Quantity for item {item.product_id} is too large.")
        ctx.emit(ItemAdded(item=item))
        return {}

    @cella.command
    def remove_item(self, cmd: RemoveItem, ctx: EventContext) -> dict[str, Any]:
        if self.line(cmd.product_id) is None:
            reject(f"Cannot remove item {cmd.product_id} because it is not in the cart.")
        ctx.emit(ItemRemoved(product_id=cmd.product_id))
        return {}

    @cella.command
    def get_cart(self) -> dict[str, Any]:
        return {"items": self.items}

    def apply(self, event: ItemAdded | ItemRemoved) -> None:
        match event:
            case ItemAdded(item=item):
                line = self.line(item.product_id)
                if line is None:
                    self.items.append(item)
                else:
                    line.quantity = min(line.quantity + item.quantity, cella.INT64_MAX)
            case ItemRemoved(product_id=product_id):
                self.items = [item for item in self.items if item.product_id != product_id]


Entity = cella.export(ShoppingCart)
