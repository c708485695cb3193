
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('web', '0001_initial'),
        ('accounts', '0003_webhookevent'),
        ('analytics', '0002_snapshot_setting_webhook_logintoken'),
    ]

    # WebhookEvent moved to accounts, LoginToken to web; their tables stay.
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
        migrations.RemoveField(
            model_name='logintoken',
            name='user',
        ),
        migrations.DeleteModel(
            name='WebhookEvent',
        ),
        migrations.DeleteModel(
            name='LoginToken',
        ),
                ],
        ),
    ]
