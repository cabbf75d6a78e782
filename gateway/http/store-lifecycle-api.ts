/**
 * Store lifecycle routes (`heal/store-lifecycle.ts` does the work; every gateway follows):
 *
 *   POST   /v1/stores                 {"id","url"}: add a data store; the rebalance runs as heals
 *   POST   /v1/stores/{id}/drain      start draining it (its chunks move to the other stores)
 *   DELETE /v1/stores/{id}/drain      cancel the drain
 *   DELETE /v1/stores/{id}            remove a drained store (refused until drained and safe)
 *
 * Progress is in `GET /v1/stores` (states `healing` while placement stores walk, `draining`
 * then `drained`) and `GET /v1/heal` (bytes copied by the walks).
 */
import type { Context, Hono } from "hono";
import {
  addStore,
  drainStore,
  type LifecycleDeps,
  removeStore,
  StoreLifecycleError,
} from "../heal/store-lifecycle.ts";
import { jsonLimit, noBody } from "./_body-limits.ts";
import type { PathItem } from "./openapi.ts";
import { AddStoreBody, valid } from "./schemas.ts";

function refused(c: Context, err: unknown): Response {
  if (err instanceof StoreLifecycleError)
    return c.json({ error: { code: err.code, message: err.message } }, err.status);
  throw err;
}

/** Mounts the lifecycle routes on `app`. */
export function mountStoreLifecycleRoutes(app: Hono, d: LifecycleDeps): void {
  app.post("/v1/stores", jsonLimit, valid("json", AddStoreBody), async (c) => {
    const body = c.req.valid("json");
    try {
      return c.json(await addStore(d, body.id, body.url), 201);
    } catch (err) {
      return refused(c, err);
    }
  });
  app.post("/v1/stores/:id/drain", noBody, async (c) => {
    try {
      return c.json(await drainStore(d, c.req.param("id"), true));
    } catch (err) {
      return refused(c, err);
    }
  });
  app.delete("/v1/stores/:id/drain", noBody, async (c) => {
    try {
      return c.json(await drainStore(d, c.req.param("id"), false));
    } catch (err) {
      return refused(c, err);
    }
  });
  app.delete("/v1/stores/:id", noBody, async (c) => {
    try {
      return c.json(await removeStore(d, c.req.param("id")));
    } catch (err) {
      return refused(c, err);
    }
  });
}

const jsonOk = (description: string) => ({
  description,
  content: { "application/json": { schema: { type: "object" } } },
});
const idParam = [{ name: "id", in: "path" as const, required: true, schema: { type: "string" } }];
const refusals = {
  "404": jsonOk("No such store (store_not_found)"),
  "409": jsonOk("Refused in the cluster's state (store_exists, store_refused), with the reason"),
};

/** OpenAPI path items of the lifecycle routes. */
export const STORE_LIFECYCLE_OPENAPI_PATHS: Record<string, PathItem> = {
  "/v1/stores": {
    post: {
      summary:
        "Adds a data store {id, url}: recorded in the cluster record (every gateway opens it), placement moves on, and the heals walk every image to move its share to it",
      requestBody: { content: { "application/json": { schema: { type: "object" } } } },
      responses: {
        "201": jsonOk("{store, placementEpoch, placement}"),
        "400": jsonOk("Bad body or URL"),
        "503": jsonOk("The store does not answer"),
        ...refusals,
      },
    },
  },
  "/v1/stores/{id}/drain": {
    post: {
      summary:
        "Starts draining store {id}: out of placement, its chunks are copied to the stores they now belong on",
      parameters: idParam,
      responses: { "200": jsonOk("{store, placementEpoch, placement}"), ...refusals },
    },
    delete: {
      summary: "Cancels the drain of store {id}: back in placement",
      parameters: idParam,
      responses: { "200": jsonOk("{store, placementEpoch, placement}"), ...refusals },
    },
  },
  "/v1/stores/{id}": {
    delete: {
      summary:
        "Removes store {id} from the cluster: only a drained store that safe-to-remove calls safe; a head holder first leaves the register (every head holder must answer, at least two must remain)",
      parameters: idParam,
      responses: {
        "200": jsonOk("{store, placementEpoch, placement, headsUpdated, registerKeysRewritten}"),
        ...refusals,
        "503": jsonOk(
          "A head holder did not answer while the store left the register (register_unavailable): run it again",
        ),
      },
    },
  },
};
