/// <reference types="vitest/config" />
import { fileURLToPath, URL } from 'node:url'
import { defineConfig, loadEnv } from 'vite'
import vue from '@vitejs/plugin-vue'
import { basemapPlugin } from './build/basemap-plugin.ts'

// The backend serves the built monitor at /monitor/ on the same origin as the API, so API
// paths stay absolute (/api/..., /panic/...). `npm run dev` proxies them to a local backend
// (NABOOM_BACKEND, default http://127.0.0.1:8000).
export default defineConfig(({ mode }) => {
  const env = loadEnv(mode, process.cwd(), '')
  const backend = env.NABOOM_BACKEND || 'http://127.0.0.1:8000'
  return {
    base: '/monitor/',
    plugins: [vue(), basemapPlugin()],
    resolve: {
      alias: { '@': fileURLToPath(new URL('./src', import.meta.url)) },
    },
    server: {
      port: 5173,
      proxy: {
        '/api': { target: backend, changeOrigin: false },
        '/panic': { target: backend, changeOrigin: false },
        '/ws': { target: backend, ws: true, changeOrigin: false },
      },
    },
    build: {
      outDir: 'dist',
      emptyOutDir: true,
      target: 'es2020',
      sourcemap: false,
      chunkSizeWarningLimit: 600,
      rollupOptions: {
        output: {
          // Leaflet is shared by every operator screen: one cacheable vendor chunk that rarely
          // changes. Admin screens and the basemap data are dynamic imports, so they become
          // their own chunks and are never in the initial download.
          manualChunks(id: string) {
            if (id.includes('node_modules/leaflet/')) return 'leaflet'
            if (id.includes('naboom-countries') || id.includes('/src/map/data/')) return 'basemap-data'
            if (id.includes('node_modules/vue') || id.includes('node_modules/@vue/') || id.includes('node_modules/pinia') || id.includes('node_modules/vue-router')) return 'vue'
            return undefined
          },
        },
      },
    },
    test: {
      environment: 'happy-dom',
      include: ['src/**/*.spec.ts'],
      restoreMocks: true,
    },
  }
})
