/*
 * Example event-sourced entity: the canonical shopping cart. `add-item` adds a quantity of a
 * product (to the existing line if the product is already in the cart), `remove-item` removes
 * a product's line, and `get-cart` replies the lines in the order they were first added. Its
 * events are published to the topic `cart-events`. The same observable behaviour (replies,
 * events, messages) as the Rust `examples/shopping-cart`.
 */

import { INT64_MAX, eventSourcedEntity, isInt64, reject, schema } from 'cella-sdk';

/** One line of the cart: `{productId, name, quantity}` (quantity a 64-bit integer). */
const lineItem = schema.object({
  productId: schema.string,
  name: schema.string,
  quantity: schema.int64,
});

const line = (state, productId) => state.items.find((item) => item.productId === productId);

export const entity = eventSourcedEntity({
  initialState: { items: [] },
  stateSchema: schema.object({ items: schema.array(lineItem) }),
  eventSchema: schema.variant({
    itemAdded: schema.object({ item: lineItem }),
    itemRemoved: schema.object({ productId: schema.string }),
  }),
  eventsTopic: 'cart-events',
  commands: {
    'add-item': {
      payload: lineItem,
      handle(state, item, ctx) {
        if (item.quantity <= 0n) {
          reject(`Quantity for item ${item.productId} must be greater than zero.`);
        }
        const inCart = line(state, item.productId)?.quantity ?? 0n;
        if (!isInt64(inCart + item.quantity)) {
          reject(`Quantity for item ${item.productId} is too large.`);
        }
        ctx.emit({ itemAdded: { item } });
        return {};
      },
    },
    'remove-item': {
      payload: schema.object({ productId: schema.string }),
      handle(state, { productId }, ctx) {
        if (line(state, productId) === undefined) {
          reject(`Cannot remove item ${productId} because it is not in the cart.`);
        }
        ctx.emit({ itemRemoved: { productId } });
        return {};
      },
    },
    'get-cart': {
      payload: schema.null,
      handle: (state) => ({ items: state.items }),
    },
  },
  apply(state, event) {
    if (event.itemAdded) {
      const { item } = event.itemAdded;
      const existing = line(state, item.productId);
      if (existing) {
        // Saturating, as the handler never emits an addition that overflows.
        const sum = existing.quantity + item.quantity;
        existing.quantity = sum > INT64_MAX ? INT64_MAX : sum;
      } else {
        state.items.push(item);
      }
    } else if (event.itemRemoved) {
      const { productId } = event.itemRemoved;
      state.items = state.items.filter((item) => item.productId !== productId);
    }
  },
});
