//! The relation cache: change reports, tracked columns, resolving row changes.

use super::*;

fn rel(oid: Oid, name: &str, identity: ReplicaIdentity, columns: Vec<Column>) -> Relation {
    Relation {
        oid,
        namespace: s("public"),
        name: s(name),
        replica_identity: identity,
        columns,
    }
}

fn base() -> Relation {
    rel(
        10,
        "Image",
        ReplicaIdentity::Default,
        vec![
            col(1, "id", 20, -1),
            col(0, "nsfw", 16, -1),
            col(0, "title", 1043, 104),
        ],
    )
}

#[test]
fn first_relation_is_new_and_a_repeat_is_unchanged() {
    let mut cache = RelationCache::new();
    assert!(cache.is_empty());
    let first = cache.insert(base());
    assert!(first.is_new() && !first.is_unchanged());
    assert_eq!(first.to_string(), "public.Image (OID 10): new");
    let again = cache.insert(base());
    assert!(!again.is_new() && again.is_unchanged());
    assert!(again.added.is_empty() && again.dropped.is_empty() && again.retyped.is_empty());
    assert_eq!(again.to_string(), "public.Image (OID 10): unchanged");
    assert_eq!(cache.len(), 1);
    assert_eq!(**cache.get(10).unwrap(), base());
    cache.clear();
    assert!(cache.get(10).is_none());
}

#[test]
fn relation_change_reports_every_kind_of_difference() {
    let mut cache = RelationCache::new();
    cache.insert(base());
    let mut next = base();
    next.namespace = s("feed");
    next.name = s("Picture");
    next.replica_identity = ReplicaIdentity::Full;
    next.columns = vec![
        col(0, "id", 20, -1),       // left the key
        col(0, "title", 1043, 204), // typmod changed: varchar(100) -> varchar(200)
        col(0, "score", 701, -1),   // added
    ];
    let change = cache.insert(next.clone());
    assert!(!change.is_new() && !change.is_unchanged());
    assert_eq!(change.renamed_from, Some((s("public"), s("Image"))));
    assert_eq!(change.replica_identity_from, Some(ReplicaIdentity::Default));
    assert_eq!(change.added, vec![col(0, "score", 701, -1)]);
    assert_eq!(change.dropped, vec![col(0, "nsfw", 16, -1)]);
    assert_eq!(
        change.retyped,
        vec![Retyped {
            before: col(0, "title", 1043, 104),
            after: col(0, "title", 1043, 204),
        }]
    );
    assert_eq!(change.key_changed, vec![col(0, "id", 20, -1)]);
    assert_eq!(*change.current, next);
    assert_eq!(*change.previous.clone().unwrap(), base());
    assert_eq!(
        **cache.get(10).unwrap(),
        next,
        "the new message replaces the entry"
    );
    assert_eq!(
        change.to_string(),
        "feed.Picture (OID 10); renamed from public.Image; replica identity DEFAULT -> FULL; \
         added [score]; dropped [nsfw]; title retyped from type 1043 (104) to 1043 (204); \
         key membership changed [id]"
    );

    assert_eq!(change.column_change("id"), None);
    assert_eq!(change.column_change("score"), None);
    assert!(
        matches!(change.column_change("nsfw"), Some(ColumnChange::Dropped(c)) if &*c.name == "nsfw")
    );
    assert!(matches!(
        change.column_change("title"),
        Some(ColumnChange::Retyped(_))
    ));

    assert_eq!(change.check_tracked(["id", "score"]), Ok(()));
    let err = change.check_tracked(["id", "nsfw"]).unwrap_err();
    assert_eq!(
        err,
        TrackedColumnChanged::Dropped {
            table: "public.Image".into(),
            column: "nsfw".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "tracked column public.Image.nsfw was dropped or renamed"
    );
    let err = change.check_tracked(["title"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tracked column public.Image.title changed type from OID 1043 (typmod 104) to OID 1043 \
         (typmod 204)"
    );
}

#[test]
fn a_renamed_column_is_dropped_plus_added() {
    let mut cache = RelationCache::new();
    cache.insert(base());
    let mut next = base();
    next.columns[1].name = s("is_nsfw");
    let change = cache.insert(next);
    assert_eq!(change.dropped, vec![col(0, "nsfw", 16, -1)]);
    assert_eq!(change.added, vec![col(0, "is_nsfw", 16, -1)]);
    assert!(change.check_tracked(["nsfw"]).is_err());
    assert!(change.check_tracked(["is_nsfw", "title"]).is_ok());
}

#[test]
fn resolve_places_row_changes_and_rejects_unknown_or_misshapen_ones() {
    let mut cache = RelationCache::new();
    cache.insert(base());
    let row = |n: usize| TupleData {
        columns: vec![Datum::Null; n],
    };
    let ins = Message::Insert(Insert {
        relation: 10,
        new: row(3),
    });
    assert_eq!(cache.resolve(&ins).unwrap().unwrap().oid, 10);
    let begin = samples().remove(0).2;
    assert_eq!(cache.resolve(&begin), Ok(None));

    let unknown = Message::Delete(Delete {
        relation: 99,
        old: OldTuple::Key(row(3)),
    });
    assert_eq!(
        cache.resolve(&unknown).unwrap_err(),
        RelationError::Unknown {
            oid: 99,
            message: "Delete"
        }
    );
    let short_old = Message::Update(Update {
        relation: 10,
        old: Some(OldTuple::Full(row(2))),
        new: row(3),
    });
    assert_eq!(
        cache.resolve(&short_old).unwrap_err(),
        RelationError::ColumnCountMismatch {
            table: "public.Image".into(),
            message: "Update",
            expected: 3,
            got: 2
        }
    );
}
