
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_webhookevent_logintoken'),
        ('analytics', '0002_snapshot_setting_webhook_logintoken'),
    ]

    # WebhookEvent and LoginToken moved to accounts; their tables stay.
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
