// Cryptlet Fabric on Azure: Function App (Flex Consumption, Python 3.11), storage (identity only),
// Key Vault (RBAC) holding the platform sealing secret and the sealed cryptlet keys, user-assigned identity, monitoring.
// Deploy:  az deployment group create -g <rg> -f iac/main.bicep -p environmentName=<name>
// The app settings here are exactly the settings shared/settings.py reads (checked by tests/test_iac.py).

targetScope = 'resourceGroup'

@minLength(3)
@maxLength(20)
@description('Short name used to derive resource names.')
param environmentName string

@description('Azure region for every resource.')
param location string = resourceGroup().location

@description('EIP-712 chainId that envelopes are signed for.')
param chainId string = '0'

@description('EIP-712 verifyingContract that envelopes are signed for.')
param verifyingContract string = '0x0000000000000000000000000000000000000000'

@secure()
@description('Platform sealing secret (base64 of >= 32 random bytes). Default: fresh randomness at first deployment.')
param sealingSecret string = base64('${newGuid()}${newGuid()}')

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = { 'azd-env-name': environmentName, app: 'cryptlet-fabric' }
var deploymentContainer = 'app-package-${take(token, 7)}'

// Built-in role definition ids.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-fabric-${token}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stfabric${take(token, 14)}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    supportsHttpsTrafficOnly: true
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-fabric-${take(token, 12)}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    enablePurgeProtection: true
  }
}

resource sealingSecretEntry 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'fabric-sealing-secret'
  properties: { value: sealingSecret, contentType: 'base64' }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-fabric-${token}'
  location: location
  tags: tags
  properties: { retentionInDays: 30, sku: { name: 'PerGB2018' } }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-fabric-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: { Application_Type: 'web', WorkspaceResourceId: logs.id, DisableLocalAuth: true }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-fabric-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: { reserved: true }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-fabric-${token}'
  location: location
  tags: union(tags, { 'azd-service-name': 'fabric' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identity.id}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: { type: 'UserAssignedIdentity', userAssignedIdentityResourceId: identity.id }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: 40, instanceMemoryMB: 2048 }
      runtime: { name: 'python', version: '3.11' }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identity.properties.clientId }
        { name: 'AZURE_CLIENT_ID', value: identity.properties.clientId }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identity.properties.clientId};Authorization=AAD' }
        { name: 'FABRIC_SEALING_SECRET', value: '@Microsoft.KeyVault(SecretUri=${sealingSecretEntry.properties.secretUri})' }
        { name: 'FABRIC_PACKAGES_DIR', value: 'cryptlet_packages' }
        { name: 'FABRIC_UPLOADS_DIR', value: '/tmp/cryptlet-uploads' }  // the app package is read-only; uploads also live in blob storage
        { name: 'FABRIC_TABLE_PREFIX', value: 'fabric' }
        { name: 'FABRIC_CHAIN_ID', value: chainId }
        { name: 'FABRIC_VERIFYING_CONTRACT', value: verifyingContract }
        { name: 'FABRIC_REGION_TIMEOUT_S', value: '10' }
        { name: 'FABRIC_REGIONS_PER_CRYPTLET', value: '2' }
        { name: 'FABRIC_MAX_PACKAGE_BYTES', value: '5242880' }
        { name: 'FABRIC_MAX_BODY_BYTES', value: '1048576' }
        // The Functions host buffers a request body up to this before the app sees it (default 100 MiB):
        // no route takes more than a package zip (docs/deploy.md#request-size-limits).
        { name: 'FUNCTIONS_REQUEST_BODY_SIZE_LIMIT', value: '5242880' }
        { name: 'FABRIC_AUDIT_SCHEDULE', value: '0 0 * * * *' }
        { name: 'FABRIC_CHECKPOINT_SCHEDULE', value: '0 */5 * * * *' }
        { name: 'FABRIC_WARM_SCHEDULE', value: '0 */1 * * * *' }
        { name: 'FABRIC_INVOKE_QUEUE', value: 'cryptlet-invocations' }
        { name: 'FABRIC_REQUEST_LEASE_S', value: '30' }
        { name: 'FABRIC_REQUEST_SWEEP_SCHEDULE', value: '*/10 * * * * *' }
        { name: 'FABRIC_CALLBACK_ALLOW', value: '' }
        { name: 'FABRIC_FIRE_QUEUE', value: 'cryptlet-fires' }
        { name: 'FABRIC_SCHEDULER_SCHEDULE', value: '* * * * * *' }
        { name: 'FABRIC_DELIVERY_BACKOFF_MAX_S', value: '60' }
        { name: 'FABRIC_KEY_STORE', value: 'keyvault' }
        { name: 'FABRIC_KEY_VAULT_URL', value: vault.properties.vaultUri }
      ]
    }
  }
}

// Role assignments for the app's identity, named with guid() so re-deployments are idempotent.
var assignments = [
  { scope: 'storage', role: roles.storageBlobDataOwner }
  { scope: 'storage', role: roles.storageQueueDataContributor }
  { scope: 'storage', role: roles.storageTableDataContributor }
]

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for a in assignments: {
  name: guid(storage.id, identity.id, a.role)
  scope: storage
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', a.role)
  }
}]

resource vaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
  }
}

// Sealed cryptlet keys are Key Vault secrets (FABRIC_KEY_STORE=keyvault): the app creates them.
resource vaultKeysRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, identity.id, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
  }
}

resource metricsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, identity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
  }
}

output functionAppName string = app.name
output functionAppUrl string = 'https://${app.properties.defaultHostName}'
output keyVaultName string = vault.name
output storageAccountName string = storage.name
