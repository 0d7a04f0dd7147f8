-- A small invoicing app, the demo's stand-in for the user's database:
-- enums, jsonb, a view, a function, a trigger, and a few hundred thousand rows.
CREATE TYPE invoice_status AS ENUM ('draft', 'sent', 'paid', 'overdue', 'void');
CREATE TYPE payment_method AS ENUM ('card', 'bank_transfer', 'cash', 'cheque');

CREATE TABLE customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL UNIQUE,
    country char(2) NOT NULL,
    address jsonb NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number text NOT NULL UNIQUE,
    customer_id bigint NOT NULL REFERENCES customers (id),
    status invoice_status NOT NULL,
    issued_on date NOT NULL,
    due_on date NOT NULL,
    currency char(3) NOT NULL DEFAULT 'EUR',
    notes text,
    metadata jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL,
    CHECK (due_on >= issued_on)
);
CREATE INDEX invoices_customer_idx ON invoices (customer_id);
CREATE INDEX invoices_open_idx ON invoices (due_on) WHERE status IN ('sent', 'overdue');

CREATE TABLE line_items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    description text NOT NULL,
    quantity numeric(12, 3) NOT NULL CHECK (quantity > 0),
    unit_price numeric(12, 2) NOT NULL,
    tax_rate numeric(5, 4) NOT NULL DEFAULT 0.19,
    total numeric(14, 2) GENERATED ALWAYS AS (round(quantity * unit_price * (1 + tax_rate), 2)) STORED
);
CREATE INDEX line_items_invoice_idx ON line_items (invoice_id);

CREATE TABLE payments (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    invoice_id bigint NOT NULL REFERENCES invoices (id),
    amount numeric(14, 2) NOT NULL,
    method payment_method NOT NULL,
    paid_at timestamptz NOT NULL,
    reference text
);

CREATE FUNCTION invoice_total(p_invoice bigint) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(total), 0) FROM line_items WHERE invoice_id = p_invoice
$$;

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
CREATE TRIGGER invoices_touch BEFORE UPDATE ON invoices FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE VIEW open_invoices AS
SELECT i.id, i.number, c.name AS customer, i.due_on, invoice_total(i.id) AS amount_due
  FROM invoices i JOIN customers c ON c.id = i.customer_id
 WHERE i.status IN ('sent', 'overdue');

COMMENT ON TABLE invoices IS 'Invoices issued to customers; totals come from line_items';

INSERT INTO customers (name, email, country, address, created_at)
SELECT 'Customer ' || g || ' ' || (ARRAY['GmbH', 'Ltd', 'S.A.', 'Inc.', 'Oy', 'Sp. z o.o.', 'Ünlü A.Ş.'])[1 + g % 7],
       'billing' || g || '@example.com',
       (ARRAY['DE', 'GB', 'ES', 'US', 'FI', 'PL', 'TR'])[1 + g % 7],
       jsonb_build_object('street', g % 300 || ' Market Street', 'city', (ARRAY['Berlin', 'London', 'Madrid', 'Austin', 'Espoo', 'Kraków', 'İzmir'])[1 + g % 7],
                          'postcode', lpad((g * 37 % 99999)::text, 5, '0')),
       timestamptz '2023-01-01 00:00+00' + g * interval '17 minutes'
  FROM generate_series(1, 20000) g;

INSERT INTO invoices (number, customer_id, status, issued_on, due_on, notes, metadata, updated_at)
SELECT 'INV-' || to_char(g, 'FM0000000'),
       1 + (g * 7919) % 20000,
       (ARRAY['draft', 'sent', 'paid', 'paid', 'paid', 'overdue', 'void'])[1 + g % 7]::invoice_status,
       date '2023-01-01' + (g % 1000),
       date '2023-01-01' + (g % 1000) + 30,
       CASE WHEN g % 5 = 0 THEN E'Deliver to the back door.\nCall before 9am.' END,
       jsonb_build_object('po', 'PO-' || (g * 13 % 100000), 'channel', (ARRAY['web', 'email', 'api'])[1 + g % 3],
                          'tags', jsonb_build_array('q' || (1 + g % 4), 'region-' || g % 9)),
       timestamptz '2023-01-02 00:00+00' + g * interval '5 minutes'
  FROM generate_series(1, 100000) g;

INSERT INTO line_items (invoice_id, description, quantity, unit_price, tax_rate)
SELECT 1 + g % 100000,
       (ARRAY['Consulting hours', 'Licence — annual', 'Support plan', 'Hardware: router', 'Training day', 'Travel expenses'])[1 + g % 6],
       1 + (g % 40) * 0.5,
       round((10 + (g * 7 % 4990))::numeric / 10, 2),
       (ARRAY[0.19, 0.07, 0.0, 0.2])[1 + g % 4]
  FROM generate_series(1, 300000) g;

INSERT INTO payments (invoice_id, amount, method, paid_at, reference)
SELECT 1 + (g * 3) % 100000,
       round((50 + g % 5000)::numeric, 2),
       (ARRAY['card', 'bank_transfer', 'cash', 'cheque'])[1 + g % 4]::payment_method,
       timestamptz '2023-02-01 00:00+00' + g * interval '7 minutes',
       CASE WHEN g % 3 = 0 THEN 'TRX' || g END
  FROM generate_series(1, 80000) g;

ANALYZE;
