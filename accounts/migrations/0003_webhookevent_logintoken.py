
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('analytics', '0002_snapshot_setting_webhook_logintoken'),
        ('accounts', '0002_pnl_period_all'),
    ]

    # The tables already exist (created by analytics 0002): only the models' home moves.
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
        migrations.CreateModel(
            name='WebhookEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('provider', models.CharField(choices=[('whop', 'Whop'), ('helius', 'Helius')], max_length=16)),
                ('event_id', models.CharField(help_text='webhook-id (Whop) or transaction signature (Helius)', max_length=200)),
                ('event_type', models.CharField(blank=True, max_length=64)),
                ('payload', models.JSONField(default=dict)),
                ('status', models.CharField(choices=[('received', 'Received'), ('processed', 'Processed'), ('ignored', 'Ignored'), ('failed', 'Failed')], default='received', max_length=10)),
                ('error', models.TextField(blank=True)),
                ('received_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('processed_at', models.DateTimeField(blank=True, null=True)),
            ],
            options={
                'db_table': 'analytics_webhookevent',
                'indexes': [models.Index(fields=['status', 'received_at'], name='webhook_status_received_idx')],
                'constraints': [models.UniqueConstraint(fields=('provider', 'event_id'), name='unique_webhook_event')],
            },
        ),
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
