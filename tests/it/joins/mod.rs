//! Joined fields against real Postgres: a shop catalogue whose products follow their shop (a
//! single-value link) and their model versions (a multi-value link, fed by a join table), under
//! random workloads of every kind of change, in both replica identities, streamed in process
//! (with the same ops from triggers fed through the sink, and a bootstrap of the same tables)
//! and by the release binary killed at random points. Every live slot's every field must equal
//! what SQL's LEFT JOIN over the same tables says.
//!
//! This module holds the fixture: the tables, the config, the trigger pipeline's ops for the same
//! tables, the statement generator, and the two sides of the comparison.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use pgroar::index::{DumpKey, IndexState};
use pgroar::ops::{EntityOps, Op};
use proptest::prelude::*;
use tokio_postgres::Client;

mod crash;
mod stream;

/// The publication every test here streams.
pub const PUBLICATION: &str = "pgroar_joins";

/// The tables (with `identity` as every table's replica identity) and the publication.
pub fn schema_sql(identity: &str) -> String {
    format!(
        r#"
CREATE TABLE shop (id int PRIMARY KEY, region text, tier int);
CREATE TABLE mv (id int PRIMARY KEY, base text);
CREATE TABLE product (id int PRIMARY KEY, "shopId" int, price int NOT NULL DEFAULT 0);
CREATE TABLE product_tag (
    product int REFERENCES product(id) ON DELETE CASCADE, tag int, PRIMARY KEY (product, tag));
CREATE TABLE product_mv (
    product int REFERENCES product(id) ON DELETE CASCADE, mv int, PRIMARY KEY (product, mv));
ALTER TABLE shop REPLICA IDENTITY {identity};
ALTER TABLE mv REPLICA IDENTITY {identity};
ALTER TABLE product REPLICA IDENTITY {identity};
ALTER TABLE product_tag REPLICA IDENTITY {identity};
ALTER TABLE product_mv REPLICA IDENTITY {identity};
CREATE PUBLICATION {PUBLICATION} FOR TABLE shop, mv, product, product_tag, product_mv;
"#
    )
}

/// The config: `tier` is both a filter and a sort field; `bases` is the union of the linked
/// model versions' bases.
pub fn config_text(url: &str, slot: &str, dir: &std::path::Path, listen: &str) -> String {
    format!(
        r#"
[postgres]
url = "{url}"
publication = "{PUBLICATION}"
slot = "{slot}"
[storage]
data_dir = "{dir}"
[http]
listen = "{listen}"
[wal]
segment_bytes = 131072
[index]
filters = [
  {{ name = "shopId", kind = "single" }}, {{ name = "region", kind = "single" }},
  {{ name = "tier", kind = "single" }}, {{ name = "tagIds", kind = "multi" }},
  {{ name = "mvIds", kind = "multi" }}, {{ name = "bases", kind = "multi" }},
]
sorts = [ {{ name = "tier", bits = 8 }}, {{ name = "price", bits = 16 }} ]
checkpoint_interval_secs = 1
[[sources]]
table = "product"
sets_alive = true
on_delete = "delete_slot"
track_fields = ["shopId", "price"]
[[sources]]
table = "product_tag"
slot_field = "product"
field = "tagIds"
value_field = "tag"
[[sources]]
table = "product_mv"
slot_field = "product"
field = "mvIds"
value_field = "mv"
[[sources]]
table = "shop"
query = "shopId eq {{id}}"
track_fields = ["region", "tier"]
[[sources]]
table = "mv"
query = "mvIds eq {{id}}"
track_fields = ["{{base}} as bases"]
"#,
        dir = dir.display(),
    )
}

/// The trigger pipeline for the same config, by hand: an ops table and, per table, the ops the
/// triggers write (a parent DELETE as the `queryOpSet` of its old key setting every field
/// NULL, a parent key change as that plus the insert form, TRUNCATE as `truncate` ops).
pub const TRIGGERS: &str = r#"
CREATE TABLE pgroar_ops (id bigserial PRIMARY KEY, entity_id bigint NOT NULL, ops jsonb NOT NULL,
                         creates_slot boolean NOT NULL DEFAULT false);
CREATE FUNCTION pgroar_op(op text, field text, value jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
  AS $$ SELECT jsonb_build_object('op', op, 'field', field, 'value', value) $$;
CREATE FUNCTION pgroar_qos(query text, ops jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
  AS $$ SELECT jsonb_build_object('op', 'queryOpSet', 'query', query, 'ops', ops) $$;

CREATE FUNCTION pgroar_product() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE ops jsonb := '[]';
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgroar_ops (entity_id, ops, creates_slot) VALUES (NEW.id, jsonb_build_array(
      pgroar_op('set', 'shopId', to_jsonb(NEW."shopId")), pgroar_op('set', 'price', to_jsonb(NEW.price))), true);
  ELSIF TG_OP = 'UPDATE' THEN
    IF NEW."shopId" IS DISTINCT FROM OLD."shopId" THEN
      ops := ops || jsonb_build_array(pgroar_op('remove', 'shopId', to_jsonb(OLD."shopId")),
                                      pgroar_op('set', 'shopId', to_jsonb(NEW."shopId")));
    END IF;
    IF NEW.price IS DISTINCT FROM OLD.price THEN
      ops := ops || jsonb_build_array(pgroar_op('remove', 'price', to_jsonb(OLD.price)),
                                      pgroar_op('set', 'price', to_jsonb(NEW.price)));
    END IF;
    IF ops <> '[]' THEN
      INSERT INTO pgroar_ops (entity_id, ops) VALUES (NEW.id, ops);
    END IF;
  ELSE
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (OLD.id, '[{"op": "delete"}]');
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION pgroar_link() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE field text := TG_ARGV[0]; col text := TG_ARGV[1];
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (OLD.product, jsonb_build_array(
      pgroar_op('remove', field, to_jsonb(OLD) -> col)));
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (NEW.product, jsonb_build_array(
      pgroar_op('add', field, to_jsonb(NEW) -> col)));
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION pgroar_parent() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE link text := TG_ARGV[0]; fields text[] := TG_ARGV[1:]; cols jsonb := '{}';
        sets jsonb := '[]'; nulls jsonb := '[]'; changed jsonb := '[]'; i int;
BEGIN
  FOR i IN 1 .. array_length(fields, 1) / 2 LOOP
    sets := sets || jsonb_build_array(pgroar_op('set', fields[2 * i - 1],
                                                 to_jsonb(NEW) -> fields[2 * i]));
    nulls := nulls || jsonb_build_array(pgroar_op('set', fields[2 * i - 1], 'null'));
    IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) -> fields[2 * i]) IS DISTINCT FROM (to_jsonb(OLD) -> fields[2 * i]) THEN
      changed := changed || jsonb_build_array(
        pgroar_op('remove', fields[2 * i - 1], to_jsonb(OLD) -> fields[2 * i]),
        pgroar_op('set', fields[2 * i - 1], to_jsonb(NEW) -> fields[2 * i]));
    END IF;
  END LOOP;
  IF TG_OP = 'INSERT' THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (NEW.id, jsonb_build_array(
      pgroar_qos(link || ' eq ' || NEW.id, sets)));
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (OLD.id, jsonb_build_array(
      pgroar_qos(link || ' eq ' || OLD.id, nulls)));
  ELSIF NEW.id IS DISTINCT FROM OLD.id THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (NEW.id, jsonb_build_array(
      pgroar_qos(link || ' eq ' || OLD.id, nulls), pgroar_qos(link || ' eq ' || NEW.id, sets)));
  ELSIF changed <> '[]' THEN
    INSERT INTO pgroar_ops (entity_id, ops) VALUES (NEW.id, jsonb_build_array(
      pgroar_qos(link || ' eq ' || NEW.id, changed)));
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION pgroar_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO pgroar_ops (entity_id, ops) VALUES (0, TG_ARGV[0]::jsonb);
  RETURN NULL;
END $$;

CREATE TRIGGER ops AFTER INSERT OR UPDATE OR DELETE ON product
  FOR EACH ROW EXECUTE FUNCTION pgroar_product();
CREATE TRIGGER ops AFTER INSERT OR UPDATE OR DELETE ON product_tag
  FOR EACH ROW EXECUTE FUNCTION pgroar_link('tagIds', 'tag');
CREATE TRIGGER ops AFTER INSERT OR UPDATE OR DELETE ON product_mv
  FOR EACH ROW EXECUTE FUNCTION pgroar_link('mvIds', 'mv');
CREATE TRIGGER ops AFTER INSERT OR UPDATE OR DELETE ON shop
  FOR EACH ROW EXECUTE FUNCTION pgroar_parent('shopId', 'region', 'region', 'tier', 'tier');
CREATE TRIGGER ops AFTER INSERT OR UPDATE OR DELETE ON mv
  FOR EACH ROW EXECUTE FUNCTION pgroar_parent('mvIds', 'bases', 'base');
CREATE TRIGGER truncate AFTER TRUNCATE ON product
  FOR EACH STATEMENT EXECUTE FUNCTION pgroar_truncate('[{"op": "truncate"}]');
CREATE TRIGGER truncate AFTER TRUNCATE ON product_tag
  FOR EACH STATEMENT EXECUTE FUNCTION pgroar_truncate('[{"op": "truncate", "field": "tagIds"}]');
CREATE TRIGGER truncate AFTER TRUNCATE ON product_mv
  FOR EACH STATEMENT EXECUTE FUNCTION pgroar_truncate('[{"op": "truncate", "field": "mvIds"}]');
CREATE TRIGGER truncate AFTER TRUNCATE ON shop FOR EACH STATEMENT EXECUTE FUNCTION
  pgroar_truncate('[{"op": "truncate", "field": "region"}, {"op": "truncate", "field": "tier"}]');
CREATE TRIGGER truncate AFTER TRUNCATE ON mv
  FOR EACH STATEMENT EXECUTE FUNCTION pgroar_truncate('[{"op": "truncate", "field": "bases"}]');
"#;

/// The trigger-made ops after `after` (an ops-table id), in commit order, and the last id.
pub async fn trigger_ops(client: &Client, after: i64) -> (Vec<EntityOps>, i64) {
    let rows = client
        .query(
            "SELECT id, entity_id, ops::text, creates_slot FROM pgroar_ops WHERE id > $1 ORDER BY id",
            &[&after],
        )
        .await
        .unwrap();
    let mut last = after;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        last = r.get(0);
        let ops: Vec<Op> = serde_json::from_str(r.get::<_, &str>(2)).unwrap();
        out.push(EntityOps {
            entity_id: r.get(1),
            ops,
            creates_slot: r.get(3),
        });
    }
    (out, last)
}

// ---------------------------------------------------------------------------------------------
// Statements

/// Products, shops, model versions and tags live in these id ranges (shops move up to twice it).
const PRODUCTS: i32 = 24;
const PARENTS: i32 = 5;
const TAGS: i32 = 4;
const REGIONS: [Option<&str>; 4] = [Some("eu"), Some("us"), Some("ap"), None];
const BASES: [Option<&str>; 3] = [Some("SDXL"), Some("SD1"), None];

fn lit(v: Option<impl fmt::Display>) -> String {
    v.map_or("NULL".into(), |v| v.to_string())
}

fn text(v: Option<&str>) -> String {
    v.map_or("NULL".into(), |v| format!("'{v}'"))
}

/// One statement of the workload.
#[derive(Clone, Debug)]
pub enum Stmt {
    InsertProduct {
        id: i32,
        shop: Option<i32>,
        price: i32,
    },
    SetShop {
        from: i32,
        to: i32,
        shop: Option<i32>,
    },
    SetPrice {
        from: i32,
        to: i32,
        price: i32,
    },
    DeleteProduct {
        from: i32,
        to: i32,
    },
    Reinsert {
        id: i32,
        shop: Option<i32>,
    },
    UpsertShop {
        id: i32,
        region: Option<&'static str>,
        tier: Option<i32>,
    },
    SetRegion {
        id: i32,
        region: Option<&'static str>,
    },
    SetTier {
        tier: Option<i32>,
    },
    MoveShop {
        from: i32,
        to: i32,
    },
    DeleteShop {
        id: i32,
    },
    Tag {
        product: i32,
        tag: i32,
        add: bool,
    },
    Retag {
        product: i32,
        from: i32,
        to: i32,
    },
    LinkMv {
        product: i32,
        mv: i32,
        add: bool,
    },
    Relink {
        product: i32,
        from: i32,
        to: i32,
    },
    UpsertMv {
        id: i32,
        base: Option<&'static str>,
    },
    DeleteMv {
        id: i32,
    },
    MoveMv {
        from: i32,
        to: i32,
    },
    Truncate(&'static str),
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::InsertProduct { id, shop, price } => write!(
                f,
                r#"INSERT INTO product VALUES ({id}, {}, {price}) ON CONFLICT (id) DO NOTHING"#,
                lit(*shop)
            ),
            Stmt::SetShop { from, to, shop } => write!(
                f,
                r#"UPDATE product SET "shopId" = {} WHERE id BETWEEN {from} AND {to}"#,
                lit(*shop)
            ),
            Stmt::SetPrice { from, to, price } => write!(
                f,
                "UPDATE product SET price = price % 500 + {price} WHERE id BETWEEN {from} AND {to}"
            ),
            Stmt::DeleteProduct { from, to } => {
                write!(f, "DELETE FROM product WHERE id BETWEEN {from} AND {to}")
            }
            Stmt::Reinsert { id, shop } => write!(
                f,
                "DELETE FROM product WHERE id = {id}; INSERT INTO product VALUES ({id}, {}, 7)",
                lit(*shop)
            ),
            Stmt::UpsertShop { id, region, tier } => write!(
                f,
                "INSERT INTO shop VALUES ({id}, {r}, {t}) ON CONFLICT (id) DO UPDATE SET region = {r}, tier = {t}",
                r = text(*region),
                t = lit(*tier)
            ),
            Stmt::SetRegion { id, region } => {
                write!(
                    f,
                    "UPDATE shop SET region = {} WHERE id = {id}",
                    text(*region)
                )
            }
            Stmt::SetTier { tier } => write!(f, "UPDATE shop SET tier = {}", lit(*tier)),
            Stmt::MoveShop { from, to } => write!(
                f,
                "UPDATE shop SET id = {to} WHERE id = {from} AND NOT EXISTS (SELECT 1 FROM shop WHERE id = {to})"
            ),
            Stmt::DeleteShop { id } => write!(f, "DELETE FROM shop WHERE id = {id}"),
            Stmt::Tag {
                product,
                tag,
                add: true,
            } => write!(
                f,
                "INSERT INTO product_tag SELECT id, {tag} FROM product WHERE id = {product} ON CONFLICT DO NOTHING"
            ),
            Stmt::Tag {
                product,
                tag,
                add: false,
            } => write!(
                f,
                "DELETE FROM product_tag WHERE product = {product} AND tag = {tag}"
            ),
            Stmt::Retag { product, from, to } => write!(
                f,
                "UPDATE product_tag SET tag = {to} WHERE product = {product} AND tag = {from} \
                 AND NOT EXISTS (SELECT 1 FROM product_tag WHERE product = {product} AND tag = {to})"
            ),
            Stmt::LinkMv {
                product,
                mv,
                add: true,
            } => write!(
                f,
                "INSERT INTO product_mv SELECT id, {mv} FROM product WHERE id = {product} ON CONFLICT DO NOTHING"
            ),
            Stmt::LinkMv {
                product,
                mv,
                add: false,
            } => write!(
                f,
                "DELETE FROM product_mv WHERE product = {product} AND mv = {mv}"
            ),
            Stmt::Relink { product, from, to } => write!(
                f,
                "UPDATE product_mv SET mv = {to} WHERE product = {product} AND mv = {from} \
                 AND NOT EXISTS (SELECT 1 FROM product_mv WHERE product = {product} AND mv = {to})"
            ),
            Stmt::UpsertMv { id, base } => write!(
                f,
                "INSERT INTO mv VALUES ({id}, {b}) ON CONFLICT (id) DO UPDATE SET base = {b}",
                b = text(*base)
            ),
            Stmt::DeleteMv { id } => write!(f, "DELETE FROM mv WHERE id = {id}"),
            Stmt::MoveMv { from, to } => write!(
                f,
                "UPDATE mv SET id = {to} WHERE id = {from} AND NOT EXISTS (SELECT 1 FROM mv WHERE id = {to})"
            ),
            Stmt::Truncate(t) => write!(f, "TRUNCATE {t}"),
        }
    }
}

/// One transaction: its statements, committed or rolled back.
#[derive(Clone, Debug)]
pub struct Txn {
    pub stmts: Vec<Stmt>,
    pub commit: bool,
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BEGIN;\n")?;
        for s in &self.stmts {
            writeln!(f, "{s};")?;
        }
        f.write_str(if self.commit { "COMMIT;" } else { "ROLLBACK;" })
    }
}

fn product() -> impl Strategy<Value = i32> {
    1..=PRODUCTS
}

fn parent() -> impl Strategy<Value = i32> {
    1..=PARENTS
}

fn link() -> impl Strategy<Value = Option<i32>> {
    // Now and then a shop that never exists, or NULL.
    prop_oneof![8 => parent().prop_map(Some), 1 => Just(Some(PARENTS * 3)), 1 => Just(None)]
}

fn range() -> impl Strategy<Value = (i32, i32)> {
    (product(), 0..6i32).prop_map(|(a, w)| (a, (a + w).min(PRODUCTS)))
}

fn stmt() -> impl Strategy<Value = Stmt> {
    let region = prop::sample::select(REGIONS.to_vec());
    let base = prop::sample::select(BASES.to_vec());
    let tier = prop_oneof![4 => (0..300i32).prop_map(Some), 1 => Just(None)];
    prop_oneof![
        5 => (product(), link(), 0..1000i32).prop_map(|(id, shop, price)| Stmt::InsertProduct { id, shop, price }),
        4 => (range(), link()).prop_map(|((from, to), shop)| Stmt::SetShop { from, to, shop }),
        2 => (range(), 0..500i32).prop_map(|((from, to), price)| Stmt::SetPrice { from, to, price }),
        2 => range().prop_map(|(from, to)| Stmt::DeleteProduct { from, to: from.max(to - 3) }),
        2 => (product(), link()).prop_map(|(id, shop)| Stmt::Reinsert { id, shop }),
        4 => (parent(), region.clone(), tier.clone()).prop_map(|(id, region, tier)| Stmt::UpsertShop { id, region, tier }),
        2 => (parent(), region).prop_map(|(id, region)| Stmt::SetRegion { id, region }),
        1 => tier.prop_map(|tier| Stmt::SetTier { tier }),
        1 => (parent(), 1..=PARENTS * 2).prop_map(|(from, to)| Stmt::MoveShop { from, to }),
        2 => parent().prop_map(|id| Stmt::DeleteShop { id }),
        4 => (product(), 1..=TAGS, any::<bool>()).prop_map(|(product, tag, add)| Stmt::Tag { product, tag, add }),
        1 => (product(), 1..=TAGS, 1..=TAGS).prop_map(|(product, from, to)| Stmt::Retag { product, from, to }),
        5 => (product(), parent(), prop::bool::weighted(0.7)).prop_map(|(product, mv, add)| Stmt::LinkMv { product, mv, add }),
        1 => (product(), parent(), parent()).prop_map(|(product, from, to)| Stmt::Relink { product, from, to }),
        4 => (parent(), base).prop_map(|(id, base)| Stmt::UpsertMv { id, base }),
        2 => parent().prop_map(|id| Stmt::DeleteMv { id }),
        1 => (parent(), 1..=PARENTS * 2).prop_map(|(from, to)| Stmt::MoveMv { from, to }),
        1 => prop::sample::select(vec!["shop", "mv", "product_mv", "product_tag", "product CASCADE", "shop, mv"]).prop_map(Stmt::Truncate),
    ]
}

/// A transaction of one to four statements; one in eight is rolled back.
pub fn txn() -> impl Strategy<Value = Txn> {
    (
        prop::collection::vec(stmt(), 1..5),
        prop::bool::weighted(0.875),
    )
        .prop_map(|(stmts, commit)| Txn { stmts, commit })
}

// ---------------------------------------------------------------------------------------------
// The comparison

/// One live product as SQL and the index see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Product {
    shop: Option<i64>,
    price: u32,
    region: Option<String>,
    tier: Option<i64>,
    tier_sort: u32,
    tags: BTreeSet<i64>,
    mvs: BTreeSet<i64>,
    bases: BTreeSet<String>,
}

/// What SQL says: every product, its shop's fields by LEFT JOIN, its tags, model versions and
/// the union of their bases.
pub async fn sql_products(client: &Client) -> BTreeMap<u32, Product> {
    let rows = client
        .query(
            r#"SELECT p.id, p."shopId", p.price, s.region, s.tier,
                 ARRAY(SELECT tag FROM product_tag WHERE product = p.id),
                 ARRAY(SELECT mv FROM product_mv WHERE product = p.id),
                 ARRAY(SELECT DISTINCT v.base FROM product_mv m JOIN mv v ON v.id = m.mv
                       WHERE m.product = p.id AND v.base IS NOT NULL)
               FROM product p LEFT JOIN shop s ON s.id = p."shopId""#,
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let tier: Option<i32> = r.get(4);
            let ints = |i| r.get::<_, Vec<i32>>(i).into_iter().map(i64::from).collect();
            (
                r.get::<_, i32>(0) as u32,
                Product {
                    shop: r.get::<_, Option<i32>>(1).map(i64::from),
                    price: r.get::<_, i32>(2).clamp(0, 65535) as u32,
                    region: r.get(3),
                    tier: tier.map(i64::from),
                    tier_sort: tier.unwrap_or(0).clamp(0, 255) as u32,
                    tags: ints(5),
                    mvs: ints(6),
                    bases: r.get::<_, Vec<String>>(7).into_iter().collect(),
                },
            )
        })
        .collect()
}

/// What the index says, for every live slot.
pub fn index_products(st: &IndexState) -> BTreeMap<u32, Product> {
    let one = |field: &str, slot: u32| -> Option<DumpKey> {
        let f = &st.filters[field];
        if f.null.contains(&slot) {
            return None;
        }
        let key = f.values.iter().find(|(_, s)| s.contains(&slot));
        Some(
            key.unwrap_or_else(|| panic!("slot {slot} holds nothing in {field}"))
                .0
                .clone(),
        )
    };
    let int = |k: Option<DumpKey>| {
        k.map(|k| match k {
            DumpKey::Int(i) => i,
            DumpKey::Str(s) => panic!("text {s} where an integer belongs"),
        })
    };
    let set = |field: &str, slot: u32| -> BTreeSet<DumpKey> {
        assert!(!st.filters[field].null.contains(&slot), "NULL in {field}");
        let values = st.filters[field].values.iter();
        values
            .filter(|(_, s)| s.contains(&slot))
            .map(|(k, _)| k.clone())
            .collect()
    };
    let ints = |field: &str, slot: u32| {
        set(field, slot)
            .into_iter()
            .map(|k| int(Some(k)).unwrap())
            .collect()
    };
    let sort = |field: &str, slot: u32| st.sorts[field].get(&slot).copied().unwrap_or(0);
    st.alive
        .iter()
        .map(|&slot| {
            let region = one("region", slot).map(|k| match k {
                DumpKey::Str(s) => s,
                DumpKey::Int(i) => i.to_string(),
            });
            let bases = set("bases", slot)
                .into_iter()
                .map(|k| match k {
                    DumpKey::Str(s) => s,
                    DumpKey::Int(i) => i.to_string(),
                })
                .collect();
            (
                slot,
                Product {
                    shop: int(one("shopId", slot)),
                    price: sort("price", slot),
                    region,
                    tier: int(one("tier", slot)),
                    tier_sort: sort("tier", slot),
                    tags: ints("tagIds", slot),
                    mvs: ints("mvIds", slot),
                    bases,
                },
            )
        })
        .collect()
}

/// The first product where the index and SQL differ, for a readable failure.
pub fn first_difference(
    sql: &BTreeMap<u32, Product>,
    index: &BTreeMap<u32, Product>,
) -> Option<String> {
    let ids: BTreeSet<&u32> = sql.keys().chain(index.keys()).collect();
    ids.into_iter().find_map(|id| {
        let (a, b) = (sql.get(id), index.get(id));
        (a != b).then(|| format!("product {id}: SQL {a:?}, index {b:?}"))
    })
}
