import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { ledgers } from "../worker/settlement/shards";

// Every ledger shard gets the same migrations (worker/settlement/shards.ts).
for (const db of ledgers(env)) await applyD1Migrations(db, env.TEST_MIGRATIONS);
