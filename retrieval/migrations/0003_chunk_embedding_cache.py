from django.db import migrations, models

# Existing chunks: hash their text, record the model of their document (all-MiniLM-L6-v2,
# 384 dimensions, the only knowledge-base model so far).
BACKFILL = """
UPDATE retrieval_chunk AS c
SET text_hash = encode(sha256(convert_to(c.text, 'UTF8')), 'hex'),
    embedding_model = 'local-minilm',
    embedding_dimensions = 384
"""


class Migration(migrations.Migration):
    dependencies = [("retrieval", "0002_document_warnings")]

    operations = [
        migrations.AddField(
            model_name="chunk",
            name="text_hash",
            field=models.CharField(db_index=True, default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="chunk",
            name="embedding_model",
            field=models.CharField(default="", max_length=80),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="chunk",
            name="embedding_dimensions",
            field=models.PositiveSmallIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
    ]
