import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { createAppRouter, installSessionExpiry } from './router'
import './assets/base.css'

const app = createApp(App)
app.use(createPinia())
const router = createAppRouter()
installSessionExpiry(router)
app.use(router)
app.mount('#app')
