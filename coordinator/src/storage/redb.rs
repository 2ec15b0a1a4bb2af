//! The embedded engine: one redb file, one redb table per [`Table`], values as stored bytes.
//! redb serializes write transactions, so a transaction body runs exactly once.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{KvEngine, KvTxn, StorageError, Table};

fn definition(table: Table) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(table.name())
}

fn engine_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::Engine(format!("redb: {e}"))
}

pub(super) struct RedbEngine {
    db: Database,
}

impl RedbEngine {
    pub(super) fn open(path: &Path, tables: &[Table]) -> Result<Self, StorageError> {
        let db = Database::create(path)
            .map_err(|e| StorageError::Engine(format!("redb {}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(engine_err)?;
        for table in tables {
            tx.open_table(definition(*table)).map_err(engine_err)?;
        }
        tx.commit().map_err(engine_err)?;
        Ok(Self { db })
    }
}

fn scan_table<T: ReadableTable<&'static str, &'static [u8]>>(
    table: &T,
    prefix: &str,
) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
    let mut out = Vec::new();
    for entry in table.range(prefix..).map_err(engine_err)? {
        let (key, value) = entry.map_err(engine_err)?;
        if !key.value().starts_with(prefix) {
            break;
        }
        out.push((key.value().to_string(), value.value().to_vec()));
    }
    Ok(out)
}

impl KvEngine for RedbEngine {
    fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read().map_err(engine_err)?;
        let table = tx.open_table(definition(table)).map_err(engine_err)?;
        Ok(table
            .get(key)
            .map_err(engine_err)?
            .map(|v| v.value().to_vec()))
    }

    fn scan(&self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let tx = self.db.begin_read().map_err(engine_err)?;
        let table = tx.open_table(definition(table)).map_err(engine_err)?;
        scan_table(&table, prefix)
    }

    fn transact(
        &self,
        body: &mut (dyn FnMut(&mut dyn KvTxn) -> Result<(), StorageError> + Send),
    ) -> Result<(), StorageError> {
        let tx = self.db.begin_write().map_err(engine_err)?;
        let mut txn = RedbTxn { tx };
        // On error the transaction is dropped, which aborts it.
        body(&mut txn)?;
        txn.tx.commit().map_err(engine_err)
    }
}

struct RedbTxn {
    tx: WriteTransaction,
}

impl KvTxn for RedbTxn {
    fn get(&mut self, table: Table, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let table = self.tx.open_table(definition(table)).map_err(engine_err)?;
        Ok(table
            .get(key)
            .map_err(engine_err)?
            .map(|v| v.value().to_vec()))
    }

    fn scan(&mut self, table: Table, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let table = self.tx.open_table(definition(table)).map_err(engine_err)?;
        scan_table(&table, prefix)
    }

    fn put(&mut self, table: Table, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.tx
            .open_table(definition(table))
            .map_err(engine_err)?
            .insert(key, value)
            .map_err(engine_err)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &str) -> Result<(), StorageError> {
        self.tx
            .open_table(definition(table))
            .map_err(engine_err)?
            .remove(key)
            .map_err(engine_err)?;
        Ok(())
    }
}
