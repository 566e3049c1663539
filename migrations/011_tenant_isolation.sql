-- Tenant isolation (issue 14): a direction's ad account and CRM connection, and an instance's
-- default direction, belong to the same account as the object that names them. `config apply`
-- refuses such a file already (qualibot/tenants_db.py); these keys make the database refuse it
-- too, whoever writes: each reference carries the account, and the target is unique per account.
-- Deleting the target still clears only the reference (ON DELETE SET NULL of that one column).

ALTER TABLE ad_accounts ADD CONSTRAINT ad_accounts_id_account UNIQUE (id, account_id);
ALTER TABLE crm_connections ADD CONSTRAINT crm_connections_id_account UNIQUE (id, account_id);
ALTER TABLE account_directions ADD CONSTRAINT account_directions_id_account UNIQUE (id, account_id);

ALTER TABLE account_directions
    DROP CONSTRAINT IF EXISTS account_directions_ad_account_id_fkey,
    DROP CONSTRAINT IF EXISTS account_directions_capi_crm_connection_id_fkey,
    ADD CONSTRAINT account_directions_ad_account_same_account
        FOREIGN KEY (ad_account_id, account_id) REFERENCES ad_accounts (id, account_id)
        ON DELETE SET NULL (ad_account_id) NOT VALID,
    ADD CONSTRAINT account_directions_crm_connection_same_account
        FOREIGN KEY (capi_crm_connection_id, account_id) REFERENCES crm_connections (id, account_id)
        ON DELETE SET NULL (capi_crm_connection_id) NOT VALID;

ALTER TABLE whatsapp_instances
    DROP CONSTRAINT IF EXISTS whatsapp_instances_default_direction_id_fkey,
    ADD CONSTRAINT whatsapp_instances_default_direction_same_account
        FOREIGN KEY (default_direction_id, account_id) REFERENCES account_directions (id, account_id)
        ON DELETE SET NULL (default_direction_id) NOT VALID;

-- Rows written before this migration are checked too; a database that already holds a reference
-- across accounts keeps working (new writes are checked all the same) and says which key to fix.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
             WHERE conname IN ('account_directions_ad_account_same_account',
                               'account_directions_crm_connection_same_account',
                               'whatsapp_instances_default_direction_same_account')
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', c.tbl, c.conname);
        EXCEPTION WHEN foreign_key_violation THEN
            RAISE WARNING 'tenant isolation: % holds a reference to another account''s object; '
                          'constraint % stays NOT VALID until it is fixed', c.tbl, c.conname;
        END;
    END LOOP;
END $$;
