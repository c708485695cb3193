
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('analytics', '0002_snapshot_setting_webhook_logintoken'),
        ('accounts', '0003_webhookevent'),
    ]

    # The table already exists (created by analytics 0002): only the model's home moves.
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
        migrations.CreateModel(
            name='LoginToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('token_hash', models.CharField(max_length=64, unique=True)),
                ('expires_at', models.DateTimeField()),
                ('used_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='login_tokens', to='accounts.telegramuser')),
            ],
            options={
                'db_table': 'analytics_logintoken',
                'indexes': [models.Index(fields=['expires_at'], name='logintoken_expires_idx')],
            },
        ),
                ],
        ),
    ]
