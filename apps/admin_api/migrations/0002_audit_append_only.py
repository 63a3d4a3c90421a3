"""The audit log is append-only: the database itself refuses UPDATE and DELETE of its rows."""

from django.db import migrations

FORBID = """
CREATE FUNCTION admin_api_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'admin_api_auditevent is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER admin_api_audit_append_only
    BEFORE UPDATE OR DELETE ON admin_api_auditevent
    FOR EACH ROW EXECUTE FUNCTION admin_api_audit_append_only();
"""

ALLOW = """
DROP TRIGGER admin_api_audit_append_only ON admin_api_auditevent;
DROP FUNCTION admin_api_audit_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("admin_api", "0001_initial")]

    operations = [migrations.RunSQL(FORBID, ALLOW)]
