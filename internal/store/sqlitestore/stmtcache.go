package sqlitestore

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache prepares each distinct query once per pool. modernc.org/sqlite
// does not cache statements itself, and parsing SQL was a fifth of the CPU of
// a heartbeat before this cache (see docs/design.md).
type stmtCache struct {
	mu    sync.Mutex
	stmts map[*sql.DB]map[string]*sql.Stmt
}

func newStmtCache() *stmtCache { return &stmtCache{stmts: map[*sql.DB]map[string]*sql.Stmt{}} }

// get returns the pool's prepared statement for query, preparing it on first
// use. The mutex is not held while preparing: preparing needs a connection,
// and the writer's transaction may be the one asking.
func (c *stmtCache) get(ctx context.Context, db *sql.DB, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	st, ok := c.stmts[db][query]
	c.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.stmts[db]
	if m == nil {
		m = map[string]*sql.Stmt{}
		c.stmts[db] = m
	}
	if prev, ok := m[query]; ok {
		st.Close() // another goroutine prepared it meanwhile
		return prev, nil
	}
	m[query] = st
	return st, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.stmts {
		for _, st := range m {
			st.Close()
		}
	}
	c.stmts = map[*sql.DB]map[string]*sql.Stmt{}
}

// cached runs queries through prepared statements of db, bound to tx when
// inside a transaction. It satisfies querier.
type cached struct {
	cache *stmtCache
	db    *sql.DB
	tx    *sql.Tx
}

func (c cached) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	st, err := c.cache.get(ctx, c.db, query)
	if err != nil {
		return nil, err
	}
	if c.tx != nil {
		return c.tx.StmtContext(ctx, st), nil
	}
	return st, nil
}

func (c cached) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext reports a prepare error through the row's Scan, as
// database/sql does.
func (c cached) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := c.stmt(ctx, query)
	if err != nil {
		if c.tx != nil {
			return c.tx.QueryRowContext(ctx, query, args...)
		}
		return c.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (c cached) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := c.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}
